/**
 * A committed backup: the manifest's presence in S3 is what makes a backup exist (docs/design.md § The
 * catalog in S3).
 */
export interface Manifest {
  readonly formatVersion: 1;
  readonly backupId: string;
  readonly kind: 'full' | 'delta';
  /** The backup this delta applies on top of; null for a full. */
  readonly parentBackupId: string | null;
  readonly pool: string;
  readonly vdiUuid: string;
  readonly vdiNameLabel: string;
  /** The snapshot that was exported; the base of the next delta while it exists on the host. */
  readonly snapshotUuid: string;
  readonly virtualSize: number;
  readonly objectKey: string;
  readonly bytes: number;
  readonly sha256: string;
  /**
   * What the export carried: for a vhd layer its present 2 MiB blocks, for a qcow2 layer its present
   * 64 KiB clusters.
   */
  readonly presentBlocks: number;
  /** The object's image format; absent in catalogs written before qcow2 support, meaning vhd. */
  readonly format?: ImageFormat;
  readonly startedAt: string;
  readonly endedAt: string;
  /** The host that served the export. */
  readonly host: string;
  /** Why a full was taken when a delta could have been (first backup, base gone, mode full). */
  readonly fullReason?: string;
  /**
   * Set on a full built in S3 from the chain that ended at this point (forever incremental: docs/design.md
   * § Forever incremental): the same backup id, now a full, and the ids it was merged from, oldest first.
   */
  readonly synthetic?: true;
  readonly mergedFrom?: readonly string[];
  readonly mergedAt?: string;
}

export const MANIFEST_FORMAT_VERSION = 1;

/** The disk image formats a backup layer may be stored in (`format` of the host's transfers). */
export type ImageFormat = 'vhd' | 'qcow2';

/** A layer's image format: a manifest without the field predates qcow2 support and is vhd. */
export function formatOf(manifest: Pick<Manifest, 'format'>): ImageFormat {
  return manifest.format ?? 'vhd';
}

/** Checks a manifest read back from S3; a manifest we can't trust is refused, not guessed at. */
export function parseManifest(text: string, key: string): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CatalogError(`manifest ${key} is not JSON`);
  }
  const m = value as Partial<Manifest>;
  const problems: string[] = [];
  if (m.formatVersion !== MANIFEST_FORMAT_VERSION) problems.push(`formatVersion ${String(m.formatVersion)}`);
  for (const field of ['backupId', 'pool', 'vdiUuid', 'snapshotUuid', 'objectKey', 'sha256'] as const) {
    if (typeof m[field] !== 'string' || m[field] === '') problems.push(`${field} missing`);
  }
  if (m.kind !== 'full' && m.kind !== 'delta') problems.push(`kind ${String(m.kind)}`);
  if (m.kind === 'delta' && typeof m.parentBackupId !== 'string')
    problems.push('delta without parentBackupId');
  for (const field of ['virtualSize', 'bytes', 'presentBlocks'] as const) {
    if (!Number.isSafeInteger(m[field]) || (m[field] as number) < 0) problems.push(`${field} not a size`);
  }
  if (m.format !== undefined && m.format !== 'vhd' && m.format !== 'qcow2') {
    problems.push(`format ${String(m.format)}`);
  }
  if (problems.length) throw new CatalogError(`manifest ${key} is invalid: ${problems.join(', ')}`);
  return m as Manifest;
}

export class CatalogError extends Error {
  override readonly name = 'CatalogError';
}

/** Backups `backupId` depends on, itself included, newest first (stops at a missing parent). */
export function chainOf(manifests: readonly Manifest[], backupId: string): Manifest[] {
  const byId = new Map(manifests.map((m) => [m.backupId, m]));
  const chain: Manifest[] = [];
  for (let m = byId.get(backupId); m && chain.length <= manifests.length;) {
    chain.push(m);
    m = m.parentBackupId ? byId.get(m.parentBackupId) : undefined;
  }
  return chain;
}
