import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { listSeries } from '../catalog/catalog.ts';
import { chainOf } from '../catalog/manifest.ts';
import { WORK_AREAS, workAreaPrefix, type CatalogLocation } from '../catalog/keys.ts';
import { CatalogError, formatOf, type ImageFormat, type Manifest } from '../catalog/manifest.ts';
import { InputValidationError } from '../shared/input-error.ts';
import { backupIdTime, isBackupId } from './input.ts';

/** One stored image (vhd or qcow2) to apply, oldest (the full) first. */
export interface RestoreLayer {
  readonly backupId: string;
  readonly kind: 'full' | 'delta';
  readonly format: ImageFormat;
  readonly objectKey: string;
  readonly bytes: number;
  readonly sha256: string;
}

export interface RestoreChain {
  readonly backupId: string;
  readonly virtualSize: number;
  readonly vdiNameLabel: string;
  /** Every layer's: a change of format starts a new chain with a full. */
  readonly format: ImageFormat;
  readonly layers: readonly RestoreLayer[];
}

/** Picks the restore point a request names; an unknown one lists the nearest that exist. */
export function chooseRestorePoint(
  manifests: readonly Manifest[],
  restorePoint: string,
  vdiUuid: string,
): Manifest {
  return choosePoint(manifests, (m) => m.backupId, restorePoint, {
    field: 'vdiUuid',
    subject: `VDI ${vdiUuid}`,
    isId: isBackupId,
  });
}

/**
 * The point of `points` (oldest first) that `restorePoint` names: `latest`, an id, or an ISO time (the
 * newest at or before it). Shared by disk and VM restore points (`subject` names whose they are).
 */
export function choosePoint<T>(
  points: readonly T[],
  idOf: (point: T) => string,
  restorePoint: string,
  where: { readonly field: string; readonly subject: string; readonly isId: (text: string) => boolean },
): T {
  if (points.length === 0) {
    throw new InputValidationError(
      where.field,
      `${where.subject} has no backups in the catalog`,
      'Check the uuid and the pool.',
    );
  }
  const nearest = (time: number) =>
    [...points]
      .map(idOf)
      .sort((a, b) => Math.abs(backupIdTime(a) - time) - Math.abs(backupIdTime(b) - time))
      .slice(0, 3)
      .sort();
  if (restorePoint === 'latest') return points.at(-1)!;
  if (where.isId(restorePoint)) {
    const found = points.find((point) => idOf(point) === restorePoint);
    if (found) return found;
    throw new InputValidationError(
      'restorePoint',
      `no backup ${restorePoint} of ${where.subject}`,
      `Nearest restore points: ${nearest(backupIdTime(restorePoint)).join(', ')}.`,
    );
  }
  const time = Date.parse(restorePoint);
  const candidates = points.filter((point) => backupIdTime(idOf(point)) <= time);
  if (candidates.length) return candidates.at(-1)!;
  throw new InputValidationError(
    'restorePoint',
    `no restore point of ${where.subject} at or before ${restorePoint}`,
    `The earliest is ${idOf(points[0]!)}; nearest: ${nearest(time).join(', ')}.`,
  );
}

/**
 * Walks from the chosen backup back to its full through the catalog, and checks that every object is there
 * with the size its manifest records (from the series' listing: one request per 1,000 objects, not a HEAD
 * each). A broken chain is refused before anything is created on the host.
 */
export async function resolveChain(
  s3: S3Client,
  catalog: CatalogLocation,
  pool: string,
  vdiUuid: string,
  restorePoint: string,
): Promise<RestoreChain> {
  const { manifests, sizes } = await listSeries(s3, catalog, pool, vdiUuid);
  const chosen = chooseRestorePoint(manifests, restorePoint, vdiUuid);
  const layers = chainOf(manifests, chosen.backupId).reverse();
  const bottom = layers[0]!;
  if (bottom.kind !== 'full') {
    throw new CatalogError(
      `broken chain: backup ${bottom.backupId} needs ${bottom.parentBackupId}, which is not in the catalog; restore a later full or an earlier point`,
    );
  }
  for (const layer of layers) {
    if (formatOf(layer) !== formatOf(chosen)) {
      throw new CatalogError(
        `broken chain: backup ${layer.backupId} is ${formatOf(layer)}, ${chosen.backupId} is ${formatOf(chosen)}`,
      );
    }
    if (layer.virtualSize !== chosen.virtualSize) {
      throw new CatalogError(
        `broken chain: backup ${layer.backupId} has virtual size ${layer.virtualSize}, ${chosen.backupId} has ${chosen.virtualSize}`,
      );
    }
  }
  for (const layer of layers) {
    const bytes = sizes.get(layer.objectKey);
    if (bytes === undefined) {
      throw new CatalogError(
        `broken chain: the object ${layer.objectKey} of backup ${layer.backupId} is missing from S3`,
      );
    }
    if (bytes !== layer.bytes) {
      throw new CatalogError(
        `broken chain: the object ${layer.objectKey} holds ${bytes} bytes, its manifest records ${layer.bytes}`,
      );
    }
  }
  return {
    backupId: chosen.backupId,
    virtualSize: chosen.virtualSize,
    vdiNameLabel: chosen.vdiNameLabel,
    format: formatOf(chosen),
    layers: layers.map((m) => ({
      backupId: m.backupId,
      kind: m.kind,
      format: formatOf(m),
      objectKey: m.objectKey,
      bytes: m.bytes,
      sha256: m.sha256,
    })),
  };
}

/** A disk restore's id among the transfers (its chain document, its Fargate results). */
export function restoreTransferId(pool: string, vdiUuid: string, startedAt: string): string {
  return `restores/${pool}/${vdiUuid}/${startedAt.replace(/[-:]/g, '')}`;
}

/** Where ResolveChain leaves a restore's chain for the imports: beside the transfer results. */
export function chainDocumentKey(catalog: CatalogLocation, restoreId: string): string {
  return `${workAreaPrefix(catalog, WORK_AREAS.transfers)}${restoreId}.chain.json`;
}

export async function writeChainDocument(
  s3: S3Client,
  catalog: CatalogLocation,
  key: string,
  chain: RestoreChain,
): Promise<void> {
  await s3.send(
    new PutObjectCommand({
      Bucket: catalog.bucket,
      Key: key,
      Body: JSON.stringify(chain),
      ContentType: 'application/json',
    }),
  );
}

/** The chain ResolveChain wrote; read once per container (an import of each layer reads it again). */
const chainDocuments = new Map<string, Promise<RestoreChain>>();
export function readChainDocument(
  s3: S3Client,
  catalog: CatalogLocation,
  key: string,
): Promise<RestoreChain> {
  let chain = chainDocuments.get(key);
  if (!chain) {
    chain = s3
      .send(new GetObjectCommand({ Bucket: catalog.bucket, Key: key }))
      .then(
        async (object) => JSON.parse((await object.Body?.transformToString('utf8')) ?? '') as RestoreChain,
      )
      .catch((error: unknown) => {
        chainDocuments.delete(key);
        throw new CatalogError(`the restore's chain document ${key} cannot be read: ${String(error)}`);
      });
    chainDocuments.set(key, chain);
    // A warm container serves many restores: keep only the last few chains.
    for (const old of [...chainDocuments.keys()].slice(0, -8)) chainDocuments.delete(old);
  }
  return chain;
}
