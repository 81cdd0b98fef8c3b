import { listManifests } from '../../lambdas/catalog/catalog.ts';
import { chainOf, formatOf, type ImageFormat } from '../../lambdas/catalog/manifest.ts';
import type { Manifest } from '../../lambdas/catalog/manifest.ts';
import { UUID_PATTERN } from '../../lambdas/shared/input-error.ts';
import { formatBytes } from '../format.ts';
import { COMMON_FLAGS, helpText, parseCommandArgs, stringFlag } from '../args.ts';
import { catalogFromFlags } from '../catalog-access.ts';
import { EXIT, UsageError, type ExitCode } from '../exit-codes.ts';
import type { CommandContext } from '../execute.ts';
import { formatTable, note, printJson, printLine } from '../output.ts';
import { catalogError } from './catalog-errors.ts';

const FLAGS = { ...COMMON_FLAGS } as const;
const USAGE =
  'vdi-vault list <vdi-uuid> [--pool <name>] [--local --s3-endpoint <url> --bucket <name>] [--json]';
const DESCRIPTION =
  'Lists the restore points of a VDI from the catalog, oldest first, with the chain each needs.';

/** A restore point and the layers a restore of it applies, oldest (the full) first. */
export interface RestorePointRow {
  readonly backupId: string;
  readonly kind: 'full' | 'delta';
  readonly parentBackupId: string | null;
  readonly startedAt: string;
  readonly endedAt: string;
  readonly bytes: number;
  readonly virtualSize: number;
  /** `qcow2` for a qcow2 point; absent for vhd, as in the manifests. */
  readonly format?: ImageFormat;
  /** Present 2 MiB blocks of a vhd point, present 64 KiB clusters of a qcow2 one. */
  readonly presentBlocks: number;
  readonly sha256: string;
  readonly snapshotUuid: string;
  /** Backup ids from the full to this one; empty when the chain is broken. */
  readonly chain: readonly string[];
  /** Bytes a restore reads: the sum over the chain. */
  readonly chainBytes: number;
  /** Why this point cannot be restored (a parent missing from the catalog). */
  readonly broken?: string;
}

export async function listCommand(args: readonly string[], context: CommandContext): Promise<ExitCode> {
  const { output } = context;
  const { values, positionals } = parseCommandArgs('list', args, FLAGS);
  if (values.help) {
    printLine(output, helpText(USAGE, DESCRIPTION, FLAGS));
    return EXIT.ok;
  }
  const vdiUuid = positionals[0];
  if (positionals.length !== 1 || vdiUuid === undefined)
    throw new UsageError(`list takes one VDI uuid, got ${positionals.length}`);
  if (!UUID_PATTERN.test(vdiUuid)) throw new UsageError(`vdiUuid: ${JSON.stringify(vdiUuid)} is not a uuid`);
  const catalog = await catalogFromFlags(values, context.env, context.aws(stringFlag(values, 'region')));
  const manifests = await listManifests(
    catalog.s3,
    catalog.location,
    catalog.pool,
    vdiUuid.toLowerCase(),
  ).catch(catalogError(catalog.location.bucket));
  const rows = restorePoints(manifests);
  if (output.json) {
    printJson(output, { pool: catalog.pool, vdiUuid: vdiUuid.toLowerCase(), restorePoints: rows });
    return EXIT.ok;
  }
  if (rows.length === 0) {
    note(
      output,
      `no backups of VDI ${vdiUuid} in pool ${catalog.pool} (s3://${catalog.location.bucket}/${catalog.location.prefix})`,
    );
    return EXIT.ok;
  }
  const { red, dim } = output.colour;
  for (const line of formatTable(rows, [
    { title: 'RESTORE POINT', value: (row) => row.backupId },
    { title: 'KIND', value: (row) => row.kind },
    { title: 'TAKEN', value: (row) => row.startedAt },
    { title: 'SIZE', value: (row) => formatBytes(row.bytes), align: 'right' },
    {
      title: 'BLOCKS',
      value: (row) => `${row.presentBlocks}${row.format === 'qcow2' ? ' qcow2 clusters' : ''}`,
      align: 'right',
    },
    { title: 'RESTORE READS', value: (row) => formatBytes(row.chainBytes), align: 'right' },
    {
      title: 'CHAIN',
      value: (row) =>
        row.broken
          ? red(`broken: ${row.broken}`)
          : row.chain.length === 1
            ? dim('(full)')
            : `${row.chain[0]} + ${row.chain.length - 1} delta${row.chain.length > 2 ? 's' : ''}`,
    },
  ])) {
    printLine(output, line);
  }
  return EXIT.ok;
}

/**
 * Each restore point with its chain, walked through parent ids in the listing we already hold (the
 * workflow's resolveChain walks the same way for one point and also checks each object in S3).
 */
export function restorePoints(manifests: readonly Manifest[]): RestorePointRow[] {
  return manifests.map((manifest) => {
    const chain = chainOf(manifests, manifest.backupId).reverse();
    const bottom = chain[0]!;
    const broken =
      bottom.kind === 'full' ? undefined : `needs ${bottom.parentBackupId}, which is not in the catalog`;
    return {
      backupId: manifest.backupId,
      kind: manifest.kind,
      parentBackupId: manifest.parentBackupId,
      startedAt: manifest.startedAt,
      endedAt: manifest.endedAt,
      bytes: manifest.bytes,
      virtualSize: manifest.virtualSize,
      ...(formatOf(manifest) === 'qcow2' ? { format: 'qcow2' as const } : {}),
      presentBlocks: manifest.presentBlocks,
      sha256: manifest.sha256,
      snapshotUuid: manifest.snapshotUuid,
      chain: broken ? [] : chain.map((m) => m.backupId),
      chainBytes: broken ? 0 : chain.reduce((sum, m) => sum + m.bytes, 0),
      ...(broken ? { broken } : {}),
    };
  });
}
