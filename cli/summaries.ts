import type { BackupOutcome, BackupSummary, MergeOutcome, RetentionReport } from '../lambdas/backup/state.ts';
import type { RestoreResult } from '../lambdas/restore/state.ts';
import type { VmRestoreResult } from '../lambdas/vm/restore-vm.ts';
import { formatBytes, formatDuration } from './format.ts';
import { readableCause, type ExecutionOutcome } from './execution-events.ts';
import { EXIT, type ExitCode } from './exit-codes.ts';
import { formatTable, printJson, printLine, type Output } from './output.ts';

/**
 * How an execution ended, for people (a table of what was done, or the cause of failure) or as the
 * command's JSON document: `{executionId, status, result?, error?, cause?}` (plus `extra`).
 */
export function reportOutcome(
  output: Output,
  outcome: ExecutionOutcome,
  extra: Record<string, unknown> = {},
): ExitCode {
  const { executionId, status, output: result, error, cause } = outcome;
  if (output.json) {
    printJson(output, {
      executionId,
      ...extra,
      status,
      ...(result !== undefined ? { result } : {}),
      ...(error !== undefined ? { error } : {}),
      ...(cause !== undefined ? { cause } : {}),
    });
  } else if (status === 'RUNNING') {
    printLine(output, `started ${executionId}`);
  } else if (status === 'SUCCEEDED') {
    if (isBackupSummary(result)) printBackupSummary(output, result);
    else if (isRestoreResult(result)) printRestoreResult(output, result);
    else if (isVmRestoreResult(result)) printVmRestoreResult(output, result);
    else printLine(output, output.colour.green('execution succeeded'));
  } else {
    const { red, bold } = output.colour;
    printLine(
      output,
      `${red(bold(`execution ${status.toLowerCase().replace('_', ' ')}`))}: ${error ?? status}`,
    );
    printLine(output, `  ${readableCause(cause)}`);
  }
  return status === 'SUCCEEDED' || status === 'RUNNING' ? EXIT.ok : EXIT.executionFailed;
}

export function isBackupSummary(value: unknown): value is BackupSummary {
  return typeof value === 'object' && value !== null && Array.isArray((value as BackupSummary).outcomes);
}

export function isRestoreResult(value: unknown): value is RestoreResult {
  return typeof value === 'object' && value !== null && Array.isArray((value as RestoreResult).layersApplied);
}

function printBackupSummary(output: Output, summary: BackupSummary): void {
  const { green, red } = output.colour;
  for (const line of formatTable<BackupOutcome>(summary.outcomes, [
    { title: 'VDI', value: (o) => o.vdiUuid },
    { title: 'RESULT', value: (o) => (o.status === 'succeeded' ? green('ok') : red('failed')) },
    { title: 'BACKUP', value: (o) => o.backupId ?? '-' },
    { title: 'KIND', value: (o) => o.kind ?? '-' },
    { title: 'SIZE', value: (o) => (o.bytes !== undefined ? formatBytes(o.bytes) : '-'), align: 'right' },
    { title: 'BLOCKS', value: (o) => String(o.presentBlocks ?? '-'), align: 'right' },
    {
      title: 'TIME',
      value: (o) => (o.durationMs !== undefined ? formatDuration(o.durationMs) : '-'),
      align: 'right',
    },
  ])) {
    printLine(output, line);
  }
  for (const outcome of summary.outcomes) {
    if (outcome.fullReason) printLine(output, `  ${outcome.vdiUuid}: full because ${outcome.fullReason}`);
    if (outcome.merge) printLine(output, `  ${outcome.vdiUuid}: ${describeMerge(outcome.merge)}`);
    if (outcome.retention) printLine(output, `  ${outcome.vdiUuid}: ${describeRetention(outcome.retention)}`);
    if (outcome.error)
      printLine(output, `  ${outcome.vdiUuid}: ${outcome.error}: ${readableCause(outcome.cause)}`);
  }
  for (const vm of summary.vmOutcomes ?? []) {
    printLine(
      output,
      vm.status === 'succeeded'
        ? `VM ${vm.vmUuid}: ${green('restore point')} ${vm.vmBackupId} (${vm.disks} disk${vm.disks === 1 ? '' : 's'})`
        : `VM ${vm.vmUuid}: ${red('no restore point')}: ${readableCause(vm.cause ?? vm.error)}`,
    );
  }
  printLine(output, `pool ${summary.pool}: ${summary.succeeded} succeeded, ${summary.failed} failed`);
}

/** What forever incremental merged after the backup (docs/design.md § Forever incremental). */
export function describeMerge(merge: MergeOutcome): string {
  switch (merge.status) {
    case 'none':
      return 'nothing to merge';
    case 'routed':
      return `merge sent to Fargate: ${merge.routeReason}`;
    case 'failed':
      return `merge failed (every kept point still restores; the next backup merges again): ${merge.error}`;
    case 'merged':
      return (
        `merged ${merge.mergedFrom.length} point(s) into a synthetic full ${merge.backupId}: ` +
        `${formatBytes(merge.bytesCopied)} copied inside S3, ${formatBytes(merge.bytesUploaded)} through compute, ` +
        `${formatBytes(merge.bytesVerified)} read back, ${merge.parts} part(s)` +
        (merge.deltasLeft ? `; ${merge.deltasLeft} delta(s) left for the next backups` : '')
      );
  }
}

/** Retention in counts (the step's output has no per-key list; each deleted key is in the Cleanup log). */
export function describeRetention(retention: RetentionReport): string {
  const orphans = retention.orphansDeleted
    ? `, ${retention.orphansDeleted} object(s) without a manifest`
    : '';
  const ids = retention.deletedIds.length
    ? ` (${retention.deletedIds.join(', ')}${retention.deleted > retention.deletedIds.length ? ', …' : ''})`
    : '';
  const line =
    `retention kept ${retention.kept} restore point(s), deleted ${retention.deleted}${ids}${orphans}: ` +
    `${retention.keysDeleted} object(s)`;
  return retention.error ? `${line}; stopped: ${retention.error}` : line;
}

export function isVmRestoreResult(value: unknown): value is VmRestoreResult {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as VmRestoreResult).sourceVmUuid === 'string' &&
    Array.isArray((value as VmRestoreResult).disks)
  );
}

function printVmRestoreResult(output: Output, result: VmRestoreResult): void {
  const { green, bold } = output.colour;
  printLine(
    output,
    `${green('restored')} ${result.restorePoint} of VM ${result.sourceVmUuid} into new VM ${bold(result.vmUuid)} "${result.nameLabel}" (halted; we never start it)`,
  );
  for (const line of formatTable(result.disks, [
    { title: 'SLOT', value: (d) => d.userdevice },
    { title: 'VDI', value: (d) => d.vdiUuid },
    { title: 'FROM', value: (d) => `${d.sourceVdiUuid} ${d.backupId}` },
    { title: 'SENT', value: (d) => formatBytes(d.bytesMoved), align: 'right' },
  ])) {
    printLine(output, line);
  }
  for (const vif of result.vifs)
    printLine(output, `  VIF ${vif.device}: ${vif.mac} on network ${vif.networkUuid}`);
  if (result.excludedSlots.length)
    printLine(output, `  not restored (excluded from the backup): slot ${result.excludedSlots.join(', ')}`);
  printLine(output, `  done in ${formatDuration(result.durationMs)}`);
}

function printRestoreResult(output: Output, result: RestoreResult): void {
  printLine(
    output,
    `${output.colour.green('restored')} ${result.restorePoint} of VDI ${result.sourceVdiUuid} into new VDI ${output.colour.bold(result.vdiUuid)}`,
  );
  printLine(
    output,
    `  ${result.strategy}: ${result.layersApplied.length} layer(s) (${result.layersApplied.join(', ')}), ` +
      `${formatBytes(result.bytesMoved)} sent in ${formatDuration(result.durationMs)}`,
  );
}
