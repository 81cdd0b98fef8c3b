// Every backup and restore a test world runs is read back by an outside implementation (qemu-img,
// libvhdi): the points stored in S3 against the content the host exported, and the streams the host
// received against the restored VDI's content. Our own codec is never the judge of its own output.
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { listManifests } from '../../lambdas/catalog/catalog.ts';
import { chainOf, type Manifest } from '../../lambdas/catalog/manifest.ts';
import type { CatalogLocation } from '../../lambdas/catalog/keys.ts';
import type { RestoreResult } from '../../lambdas/restore/state.ts';
import type { SimDiskContent, SimTransfer, XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { readChainOutside, sha256OfFile, type OutsideReader } from './outside-readers.ts';

/** One comparison an outside reader made. */
export interface OutsideCheck {
  readonly what: 'stored point' | 'restore stream';
  readonly backupId: string;
  readonly reader: OutsideReader | 'raw';
  readonly layers: number;
}

export class OutsideReadChecks {
  /** Each checked point's content as the host exported it. */
  readonly #pointContent = new Map<string, SimDiskContent>();
  readonly #done: OutsideCheck[] = [];
  readonly #sim: XapiSimulator;
  readonly #s3: S3Client;
  readonly #location: CatalogLocation;
  readonly #pool: string;

  constructor(sim: XapiSimulator, s3: S3Client, target: { bucket: string; prefix?: string; pool?: string }) {
    if (target.prefix === undefined || target.pool === undefined) {
      throw new Error('OutsideReadChecks: the world names its pool and prefix');
    }
    this.#sim = sim;
    this.#s3 = s3;
    this.#location = { bucket: target.bucket, prefix: target.prefix };
    this.#pool = target.pool;
  }

  /** Every check made so far, oldest first. */
  get done(): readonly OutsideCheck[] {
    return this.#done;
  }

  /**
   * For each export the host completed during a backup whose point was committed: the stored chain up to
   * that point (full, then its deltas) is read by an outside reader and must equal the content the host
   * exported, byte for byte.
   */
  async storedPoints(transfers: readonly SimTransfer[]): Promise<void> {
    // The content each exported snapshot held, by the VDI whose series it belongs to.
    const exported = new Map<string, Map<string, SimDiskContent>>();
    for (const transfer of transfers) {
      if (transfer.direction !== 'export' || transfer.outcome !== 'success' || transfer.format === 'raw')
        continue;
      if (transfer.snapshotOfUuid === undefined) continue; // not a snapshot: no backup stores it
      const series = exported.get(transfer.snapshotOfUuid) ?? new Map<string, SimDiskContent>();
      series.set(transfer.vdiUuid, recorded(transfer.exportedContent));
      exported.set(transfer.snapshotOfUuid, series);
    }
    for (const [vdiUuid, snapshots] of exported) {
      const manifests = await listManifests(this.#s3, this.#location, this.#pool, vdiUuid);
      for (const manifest of manifests) {
        const content = snapshots.get(manifest.snapshotUuid);
        if (content === undefined) continue;
        const chain = chainOf(manifests, manifest.backupId).reverse();
        if (chain[0]?.kind !== 'full') {
          throw new Error(`outside check: the chain of ${manifest.backupId} does not start at a full`);
        }
        const read = await this.#withStoredChain(chain, (files) => readChainOutside(files, content));
        expectSame(read, `stored point ${manifest.backupId}`, "the host's content");
        this.#pointContent.set(manifest.backupId, content);
        this.#done.push({
          what: 'stored point',
          backupId: manifest.backupId,
          reader: read.reader,
          layers: chain.length,
        });
      }
    }
  }

  /**
   * The bodies the host accepted for the restored VDI, in order (replay: the full then each delta; merge:
   * one stream), read by an outside reader: equal to the VDI's content at the host and, when this world
   * stored the point, the host's content equals what it exported for that point.
   */
  async restoredStreams(
    result: Pick<RestoreResult, 'vdiUuid' | 'restorePoint'>,
    transfers: readonly SimTransfer[],
  ): Promise<void> {
    const bodies = transfers.filter(
      (transfer) =>
        transfer.direction === 'import' &&
        transfer.outcome === 'success' &&
        transfer.vdiUuid === result.vdiUuid,
    );
    if (bodies.length === 0)
      throw new Error(`outside check: the host received no import for ${result.vdiUuid}`);
    const files = bodies.map((body) => recorded(body.bodyPath));
    const restored = this.#sim.diskContent(result.vdiUuid);
    let reader: OutsideCheck['reader'];
    if (bodies.every((body) => body.format === 'raw')) {
      if (files.length !== 1) throw new Error(`outside check: ${files.length} raw imports into one VDI`);
      reader = 'raw';
      if ((await sha256OfFile(files[0]!)) !== restored.sha256()) {
        throw new Error(
          `outside check: the raw restore of ${result.restorePoint} differs from the host's content`,
        );
      }
    } else {
      const read = await readChainOutside(files, restored);
      expectSame(read, `restore of ${result.restorePoint}`, "the host's content");
      reader = read.reader;
    }
    const point = this.#pointContent.get(result.restorePoint);
    if (point !== undefined && !sameContent(point, restored)) {
      throw new Error(`outside check: restore of ${result.restorePoint} differs from what the host exported`);
    }
    this.#done.push({ what: 'restore stream', backupId: result.restorePoint, reader, layers: files.length });
  }

  /** Downloads the chain's objects (oldest first) into files for `read`, then removes them. */
  async #withStoredChain<T>(chain: readonly Manifest[], read: (files: string[]) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(tmpdir(), 'vdi-vault-stored-'));
    try {
      const files: string[] = [];
      for (const [index, layer] of chain.entries()) {
        const file = join(dir, `${index}.image`);
        const object = await this.#s3.send(
          new GetObjectCommand({ Bucket: this.#location.bucket, Key: layer.objectKey }),
        );
        await pipeline(object.Body as Readable, createWriteStream(file));
        files.push(file);
      }
      return await read(files);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

function expectSame(read: { reader: string; same: boolean; why?: string }, what: string, against: string) {
  if (!read.same) {
    throw new Error(
      `outside check: ${read.reader} reads the ${what} differently from ${against}` +
        (read.why ? ` (${read.why})` : ''),
    );
  }
}

/** Block by block, absent reading as zeros: no pass over a huge disk's holes. */
function sameContent(a: SimDiskContent, b: SimDiskContent): boolean {
  if (a.virtualSize !== b.virtualSize) return false;
  const zeros = (block: Uint8Array) => block.every((byte) => byte === 0);
  const indexes = new Set([...a.allocatedBlocks(), ...b.allocatedBlocks()]);
  for (const index of indexes) {
    const left = a.readBlock(index);
    const right = b.readBlock(index);
    if (!(Buffer.from(left).equals(Buffer.from(right)) || (zeros(left) && zeros(right)))) return false;
  }
  return true;
}

function recorded<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('outside check: the simulator is not recording transfers');
  return value;
}
