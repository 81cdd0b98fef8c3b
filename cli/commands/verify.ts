import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { listManifests } from '../../lambdas/catalog/catalog.ts';
import { formatOf, type ImageFormat, type Manifest } from '../../lambdas/catalog/manifest.ts';
import { createQcow2Validator } from '../../lambdas/qcow2/index.ts';
import { chooseRestorePoint, resolveChain } from '../../lambdas/restore/chain.ts';
import { UUID_PATTERN } from '../../lambdas/shared/input-error.ts';
import { createVhdValidator } from '../../lambdas/vhd/index.ts';
import { formatBytes } from '../format.ts';
import { booleanFlag, COMMON_FLAGS, helpText, parseCommandArgs, stringFlag } from '../args.ts';
import { catalogFromFlags, type CatalogAccess } from '../catalog-access.ts';
import { EXIT, UsageError, type ExitCode } from '../exit-codes.ts';
import type { CommandContext } from '../execute.ts';
import { LiveDisplay } from '../live-display.ts';
import { formatTable, printJson, printLine } from '../output.ts';
import { validated } from '../validated.ts';
import { catalogError } from './catalog-errors.ts';

const FLAGS = {
  'restore-point': {
    type: 'string',
    value: '<point>',
    help: 'the chain to verify: `latest` (default), a backup id or an ISO time',
  },
  all: { type: 'boolean', help: 'verify every object of the VDI, not one chain' },
  ...COMMON_FLAGS,
} as const;
const USAGE = 'vdi-vault verify <vdi-uuid> [--restore-point <point> | --all] [--local …] [--json]';
const DESCRIPTION =
  "Re-reads a restore point's chain from S3, validates each image (VHD or qcow2) and compares its size and sha256 with its manifest.";

export interface LayerVerification {
  readonly backupId: string;
  readonly kind: 'full' | 'delta';
  readonly objectKey: string;
  readonly format: ImageFormat;
  readonly ok: boolean;
  /** What differs from the manifest, or why the object is not a valid image. Empty when ok. */
  readonly problems: readonly string[];
  readonly expected: { readonly bytes: number; readonly sha256: string };
  readonly actual: { readonly bytes: number; readonly sha256: string | null };
  readonly vhd: {
    readonly diskType: string;
    readonly presentBlocks: number;
    readonly virtualSize: number;
  } | null;
  /** A qcow2 layer's image as read (`vhd` is null then). */
  readonly qcow2: { readonly presentClusters: number; readonly virtualSize: number } | null;
}

export async function verifyCommand(args: readonly string[], context: CommandContext): Promise<ExitCode> {
  const { output } = context;
  const { values, positionals } = parseCommandArgs('verify', args, FLAGS);
  if (values.help) {
    printLine(output, helpText(USAGE, DESCRIPTION, FLAGS));
    return EXIT.ok;
  }
  const vdiUuid = positionals[0]?.toLowerCase();
  if (positionals.length !== 1 || vdiUuid === undefined)
    throw new UsageError(`verify takes one VDI uuid, got ${positionals.length}`);
  if (!UUID_PATTERN.test(vdiUuid))
    throw new UsageError(`vdiUuid: ${JSON.stringify(positionals[0])} is not a uuid`);
  const all = booleanFlag(values, 'all');
  const restorePoint = stringFlag(values, 'restore-point') ?? 'latest';
  if (all && values['restore-point'] !== undefined)
    throw new UsageError('give --restore-point or --all, not both');
  const catalog = await catalogFromFlags(values, context.env, context.aws(stringFlag(values, 'region')));

  const chosen = await layersToVerify(catalog, vdiUuid, all ? undefined : restorePoint);
  const subject = all
    ? `every backup of VDI ${vdiUuid}`
    : `restore point ${chosen.restorePoint} of VDI ${vdiUuid}`;
  const display = new LiveDisplay(output);
  const layers: LayerVerification[] = [];
  for (const manifest of chosen.manifests) {
    layers.push(
      await verifyLayer(catalog.s3, catalog.location.bucket, manifest, (bytes) =>
        display.progress(`verify ${manifest.backupId}`, bytes, manifest.bytes),
      ),
    );
  }
  display.close();
  const problems = [...(chosen.broken ? [chosen.broken] : []), ...layers.flatMap((layer) => layer.problems)];
  const ok = problems.length === 0;
  if (output.json) {
    printJson(output, {
      pool: catalog.pool,
      vdiUuid,
      restorePoint: all ? null : chosen.restorePoint,
      ok,
      ...(chosen.broken ? { broken: chosen.broken } : {}),
      layers,
    });
  } else {
    const { green, red } = output.colour;
    printLine(output, `verifying ${subject} in pool ${catalog.pool}`);
    for (const line of formatTable(layers, [
      { title: 'BACKUP', value: (layer) => layer.backupId },
      { title: 'KIND', value: (layer) => layer.kind },
      { title: 'SIZE', value: (layer) => formatBytes(layer.actual.bytes), align: 'right' },
      { title: 'SHA256', value: (layer) => (layer.actual.sha256 ?? '-').slice(0, 16) },
      {
        title: 'IMAGE',
        value: (layer) =>
          layer.vhd
            ? `vhd ${layer.vhd.diskType}, ${layer.vhd.presentBlocks} blocks`
            : layer.qcow2
              ? `qcow2, ${layer.qcow2.presentClusters} clusters`
              : '-',
      },
      { title: 'RESULT', value: (layer) => (layer.ok ? green('ok') : red(layer.problems.join('; '))) },
    ])) {
      printLine(output, line);
    }
    if (chosen.broken) printLine(output, red(chosen.broken));
    printLine(
      output,
      ok
        ? green(`verified: ${layers.length} object(s) match their manifests`)
        : red(`verification failed: ${problems.length} problem(s)`),
    );
  }
  return ok ? EXIT.ok : EXIT.verificationFailed;
}

/**
 * The manifests to check. For a restore point, the workflow's own chain resolution picks them; a chain
 * it refuses (a parent missing, an object missing or of the wrong size) is itself a failed verification,
 * and we still check each object the catalog has.
 */
async function layersToVerify(
  catalog: CatalogAccess,
  vdiUuid: string,
  restorePoint: string | undefined,
): Promise<{ manifests: Manifest[]; restorePoint?: string; broken?: string }> {
  const manifests = await listManifests(catalog.s3, catalog.location, catalog.pool, vdiUuid).catch(
    catalogError(catalog.location.bucket),
  );
  if (manifests.length === 0) {
    throw new UsageError(
      `vdiUuid: VDI ${vdiUuid} has no backups in pool ${catalog.pool} (see \`vdi-vault list\`)`,
    );
  }
  if (restorePoint === undefined) return { manifests };
  try {
    const chain = await validated(() =>
      resolveChain(catalog.s3, catalog.location, catalog.pool, vdiUuid, restorePoint),
    );
    const byId = new Map(manifests.map((m) => [m.backupId, m]));
    return {
      manifests: chain.layers.map((layer) => byId.get(layer.backupId)!),
      restorePoint: chain.backupId,
    };
  } catch (error) {
    if ((error as Error).name !== 'CatalogError') throw error;
    // Check what is there anyway: the point itself and each ancestor the catalog still has.
    const point = validated(() => chooseRestorePoint(manifests, restorePoint, vdiUuid));
    const byId = new Map(manifests.map((m) => [m.backupId, m]));
    const present: Manifest[] = [];
    for (
      let m: Manifest | undefined = point;
      m && !present.includes(m);
      m = byId.get(m.parentBackupId ?? '')
    ) {
      present.unshift(m);
    }
    return { manifests: present, restorePoint: point.backupId, broken: (error as Error).message };
  }
}

/**
 * Streams one object through its format's validator (VHD or qcow2) and sha256, and compares what it saw
 * with the manifest.
 */
export async function verifyLayer(
  s3: S3Client,
  bucket: string,
  manifest: Manifest,
  onProgress: (bytes: number) => void = () => {},
): Promise<LayerVerification> {
  const problems: string[] = [];
  const hash = createHash('sha256');
  const format = formatOf(manifest);
  const vhdValidator = format === 'vhd' ? createVhdValidator() : undefined;
  const qcow2Validator =
    format === 'qcow2' ? createQcow2Validator({ virtualSize: manifest.virtualSize }) : undefined;
  const validator = vhdValidator ?? qcow2Validator!;
  let bytes = 0;
  let sha256: string | null = null;
  try {
    const { Body } = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: manifest.objectKey }));
    await pipeline(
      Body as Readable,
      validator,
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          hash.update(chunk);
          bytes += chunk.length;
          onProgress(bytes);
          done();
        },
      }),
    );
    sha256 = hash.digest('hex');
  } catch (error) {
    const { name, message } = error as Error;
    problems.push(
      name === 'NoSuchKey' || name === 'NotFound'
        ? 'object missing from S3'
        : name.startsWith('Vhd') || name === 'HttpErrorInBody'
          ? `not a valid VHD: ${message}`
          : name.startsWith('Qcow2')
            ? `not a valid qcow2: ${message}`
            : `unreadable: ${name}: ${message}`,
    );
  }
  const summary = vhdValidator?.summary;
  const qcow2Summary = qcow2Validator?.summary;
  if (qcow2Summary && qcow2Summary.presentClusters !== manifest.presentBlocks) {
    problems.push(`${qcow2Summary.presentClusters} clusters, the manifest records ${manifest.presentBlocks}`);
  }
  if (sha256 !== null) {
    if (bytes !== manifest.bytes) problems.push(`${bytes} bytes, the manifest records ${manifest.bytes}`);
    if (sha256 !== manifest.sha256) problems.push('sha256 differs from the manifest');
  }
  if (summary) {
    const expectedType = manifest.kind === 'full' ? 'dynamic' : 'differencing';
    if (summary.diskType !== expectedType)
      problems.push(`a ${summary.diskType} VHD, expected ${expectedType} for a ${manifest.kind}`);
    if (summary.virtualSize !== manifest.virtualSize) {
      problems.push(`virtual size ${summary.virtualSize}, the manifest records ${manifest.virtualSize}`);
    }
    if (summary.presentBlocks !== manifest.presentBlocks) {
      problems.push(`${summary.presentBlocks} blocks, the manifest records ${manifest.presentBlocks}`);
    }
  }
  return {
    backupId: manifest.backupId,
    kind: manifest.kind,
    objectKey: manifest.objectKey,
    format,
    ok: problems.length === 0,
    problems,
    expected: { bytes: manifest.bytes, sha256: manifest.sha256 },
    actual: { bytes, sha256 },
    vhd: summary
      ? { diskType: summary.diskType, presentBlocks: summary.presentBlocks, virtualSize: summary.virtualSize }
      : null,
    qcow2: qcow2Summary
      ? { presentClusters: qcow2Summary.presentClusters, virtualSize: qcow2Summary.virtualSize }
      : null,
  };
}
