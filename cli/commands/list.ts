import { listManifests, listSeries } from '../../lambdas/catalog/catalog.ts';
import { chainOf, formatOf, type ImageFormat } from '../../lambdas/catalog/manifest.ts';
import type { Manifest } from '../../lambdas/catalog/manifest.ts';
import { UUID_PATTERN } from '../../lambdas/shared/input-error.ts';
import { formatBytes } from '../format.ts';
import { COMMON_FLAGS, helpText, parseCommandArgs, stringFlag, type FlagValues } from '../args.ts';
import { listVmManifests } from '../../lambdas/catalog/vm-manifest.ts';
import { catalogFromFlags } from '../catalog-access.ts';
import { EXIT, UsageError, type ExitCode } from '../exit-codes.ts';
import type { CommandContext } from '../execute.ts';
import { formatTable, note, printJson, printLine } from '../output.ts';
import { catalogError } from './catalog-errors.ts';

const FLAGS = {
  vm: {
    type: 'string',
    value: '<vm-uuid>',
    help: 'list the VM restore points of a VM instead, each with the restore point of every disk',
  },
  ...COMMON_FLAGS,
} as const;
const USAGE =
  'vdi-vault list <vdi-uuid> | --vm <vm-uuid> [--pool <name>] [--local --s3-endpoint <url> --bucket <name>] [--json]';
const DESCRIPTION =
  'Lists the restore points of a VDI (or of a VM) from the catalog, oldest first, with what each needs.';

/** A VM restore point as `list --vm` shows it: each disk's point, and whether the catalog still holds them all. */
export interface VmRestorePointRow {
  readonly vmBackupId: string;
  readonly startedAt: string;
  readonly endedAt: string;
  readonly nameLabel: string | undefined;
  readonly disks: readonly {
    readonly userdevice: string;
    readonly vdiUuid: string;
    readonly backupId: string;
    /** False when that disk's point (or a layer of its chain) is gone from the catalog. */
    readonly restorable: boolean;
  }[];
  readonly excludedDisks: number;
  readonly vifs: number;
  /** Why the VM point cannot be restored whole: its disks' points that are gone. */
  readonly broken?: string;
}

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
  /** A full built in S3 by merging the points in `mergedFrom` (forever incremental). */
  readonly synthetic?: true;
  readonly mergedFrom?: readonly string[];
}

export async function listCommand(args: readonly string[], context: CommandContext): Promise<ExitCode> {
  const { output } = context;
  const { values, positionals } = parseCommandArgs('list', args, FLAGS);
  if (values.help) {
    printLine(output, helpText(USAGE, DESCRIPTION, FLAGS));
    return EXIT.ok;
  }
  const vmUuid = stringFlag(values, 'vm');
  if (vmUuid !== undefined) return listVmCommand(vmUuid, positionals, values, context);
  const vdiUuid = positionals[0];
  if (positionals.length !== 1 || vdiUuid === undefined)
    throw new UsageError(`list takes one VDI uuid, got ${positionals.length}`);
  if (!UUID_PATTERN.test(vdiUuid)) throw new UsageError(`vdiUuid: ${JSON.stringify(vdiUuid)} is not a uuid`);
  const catalog = await catalogFromFlags(values, context.env, context.aws(stringFlag(values, 'region')));
  const { manifests, sizes } = await listSeries(
    catalog.s3,
    catalog.location,
    catalog.pool,
    vdiUuid.toLowerCase(),
  ).catch(catalogError(catalog.location.bucket));
  const rows = restorePoints(manifests);
  const storage = seriesStorage(manifests, sizes);
  if (output.json) {
    printJson(output, { pool: catalog.pool, vdiUuid: vdiUuid.toLowerCase(), restorePoints: rows, storage });
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
    { title: 'KIND', value: (row) => (row.synthetic ? 'full (merged)' : row.kind) },
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
  printLine(
    output,
    `stored: ${formatBytes(storage.storedBytes)} in ${storage.objects} object(s) for a ${formatBytes(storage.logicalBytes)} disk`,
  );
  return EXIT.ok;
}

/** What a series costs in S3: every object under its prefix (manifests too), beside the disk's size. */
export interface SeriesStorage {
  readonly storedBytes: number;
  readonly objects: number;
  /** The newest point's virtual size. */
  readonly logicalBytes: number;
}

export function seriesStorage(
  manifests: readonly Manifest[],
  sizes: ReadonlyMap<string, number>,
): SeriesStorage {
  return {
    storedBytes: [...sizes.values()].reduce((sum, size) => sum + size, 0),
    objects: sizes.size,
    logicalBytes: manifests.at(-1)?.virtualSize ?? 0,
  };
}

async function listVmCommand(
  vmUuid: string,
  positionals: readonly string[],
  values: FlagValues,
  context: CommandContext,
): Promise<ExitCode> {
  const { output } = context;
  if (positionals.length) throw new UsageError('give either a VDI uuid or --vm, not both');
  if (!UUID_PATTERN.test(vmUuid)) throw new UsageError(`--vm: ${JSON.stringify(vmUuid)} is not a uuid`);
  const catalog = await catalogFromFlags(values, context.env, context.aws(stringFlag(values, 'region')));
  const uuid = vmUuid.toLowerCase();
  const points = await listVmManifests(catalog.s3, catalog.location, catalog.pool, uuid).catch(
    catalogError(catalog.location.bucket),
  );
  // Each disk's series once: a VM point is restorable while every disk's point has its whole chain.
  const series = new Map<string, RestorePointRow[]>();
  for (const vdi of new Set(points.flatMap((point) => point.disks.map((disk) => disk.vdiUuid)))) {
    const manifests = await listManifests(catalog.s3, catalog.location, catalog.pool, vdi).catch(
      catalogError(catalog.location.bucket),
    );
    series.set(vdi, restorePoints(manifests));
  }
  const rows: VmRestorePointRow[] = points.map((point) => {
    const disks = point.disks.map((disk) => {
      const row = series.get(disk.vdiUuid)?.find((candidate) => candidate.backupId === disk.backupId);
      return {
        userdevice: disk.userdevice,
        vdiUuid: disk.vdiUuid,
        backupId: disk.backupId,
        restorable: row !== undefined && row.broken === undefined,
      };
    });
    const gone = disks.filter((disk) => !disk.restorable);
    return {
      vmBackupId: point.vmBackupId,
      startedAt: point.startedAt,
      endedAt: point.endedAt,
      nameLabel: point.record.name_label,
      disks,
      excludedDisks: point.excludedDisks.length,
      vifs: point.vifs.length,
      ...(gone.length
        ? {
            broken: `disk ${gone.map((disk) => `${disk.userdevice} (${disk.backupId})`).join(', ')} no longer in the catalog`,
          }
        : {}),
    };
  });
  if (output.json) {
    printJson(output, { pool: catalog.pool, vmUuid: uuid, vmRestorePoints: rows });
    return EXIT.ok;
  }
  if (rows.length === 0) {
    note(output, `no VM restore points of VM ${vmUuid} in pool ${catalog.pool}`);
    return EXIT.ok;
  }
  const { red } = output.colour;
  for (const line of formatTable(rows, [
    { title: 'VM RESTORE POINT', value: (row) => row.vmBackupId },
    { title: 'TAKEN', value: (row) => row.startedAt },
    { title: 'VM', value: (row) => row.nameLabel ?? '-' },
    {
      title: 'DISKS',
      value: (row) => row.disks.map((disk) => `${disk.userdevice}:${disk.backupId}`).join(' '),
    },
    { title: 'VIFS', value: (row) => String(row.vifs), align: 'right' },
    { title: 'STATE', value: (row) => (row.broken ? red(`broken: ${row.broken}`) : 'restorable') },
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
      ...(manifest.synthetic ? { synthetic: true as const, mergedFrom: manifest.mergedFrom ?? [] } : {}),
    };
  });
}
