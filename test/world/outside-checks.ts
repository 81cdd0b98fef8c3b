// Every backup and restore a test world runs is read back by an outside implementation (qemu-img,
// libvhdi): the points stored in S3 against the content the host exported, and the streams the host
// received against the restored VDI's content. Our own codec is never the judge of its own output.
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { listManifests } from '../../lambdas/catalog/catalog.ts';
import { chainOf, type Manifest } from '../../lambdas/catalog/manifest.ts';
import type { CatalogLocation } from '../../lambdas/catalog/keys.ts';
import type { RestoreResult } from '../../lambdas/restore/state.ts';
import type { SimTransfer, XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { readVhdChainOutside, sha256OfFile, type OutsideRead } from './outside-readers.ts';

/** One comparison an outside reader made. */
export interface OutsideCheck {
  readonly what: 'stored point' | 'restore stream';
  readonly backupId: string;
  readonly reader: OutsideRead['reader'] | 'raw';
  readonly layers: number;
}

export class OutsideReadChecks {
  /** Each checked point's content as the host exported it (sha256 of its raw disk). */
  readonly #pointContent = new Map<string, string>();
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
   * For each vhd export the host completed during a backup whose point was committed: the stored chain up
   * to that point (full, then its deltas) is read by qemu-img (a full) or libvhdi (a delta) and must equal
   * the content the host exported, byte for byte.
   */
  async storedPoints(transfers: readonly SimTransfer[]): Promise<void> {
    const exported = new Map<string, string>();
    for (const transfer of transfers) {
      if (transfer.direction !== 'export' || transfer.outcome !== 'success' || transfer.format !== 'vhd')
        continue;
      exported.set(transfer.vdiUuid, recorded(transfer.exportedSha256)());
    }
    if (exported.size === 0) return;
    for (const series of await this.#series()) {
      const manifests = await listManifests(this.#s3, this.#location, this.#pool, series);
      for (const manifest of manifests) {
        const content = exported.get(manifest.snapshotUuid);
        if (content === undefined) continue;
        const chain = chainOf(manifests, manifest.backupId).reverse();
        if (chain[0]?.kind !== 'full') {
          throw new Error(`outside check: the chain of ${manifest.backupId} does not start at a full`);
        }
        const read = await this.#readStored(chain);
        expectSame(read, content, manifest.virtualSize, `stored point ${manifest.backupId}`);
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
   * stored the point, to what the host exported for it.
   */
  async restoredStreams(result: RestoreResult, transfers: readonly SimTransfer[]): Promise<void> {
    const bodies = transfers.filter(
      (transfer) =>
        transfer.direction === 'import' &&
        transfer.outcome === 'success' &&
        transfer.vdiUuid === result.vdiUuid,
    );
    if (bodies.length === 0)
      throw new Error(`outside check: the host received no import for ${result.vdiUuid}`);
    const formats = new Set(bodies.map((body) => body.format));
    if (formats.size !== 1) throw new Error(`outside check: mixed import formats ${[...formats].join(', ')}`);
    const files = bodies.map((body) => recorded(body.bodyPath));
    const virtualSize = Number(this.#sim.vdiRecord(result.vdiUuid)?.virtual_size);
    let read: OutsideRead | { reader: 'raw'; size: number; sha256: string };
    if (formats.has('raw')) {
      if (files.length !== 1) throw new Error(`outside check: ${files.length} raw imports into one VDI`);
      read = { reader: 'raw', size: virtualSize, sha256: await sha256OfFile(files[0]!) };
    } else {
      read = await readVhdChainOutside(files);
    }
    expectSame(read, this.#sim.diskSha256(result.vdiUuid), virtualSize, `restore of ${result.restorePoint}`);
    const point = this.#pointContent.get(result.restorePoint);
    if (point !== undefined && point !== read.sha256) {
      throw new Error(`outside check: restore of ${result.restorePoint} differs from what the host exported`);
    }
    this.#done.push({
      what: 'restore stream',
      backupId: result.restorePoint,
      reader: read.reader,
      layers: files.length,
    });
  }

  /** The VDI uuids that have a series under the pool's prefix. */
  async #series(): Promise<string[]> {
    const prefix = `${this.#location.prefix}/${this.#pool}/`;
    const series: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.#s3.send(
        new ListObjectsV2Command({
          Bucket: this.#location.bucket,
          Prefix: prefix,
          Delimiter: '/',
          ContinuationToken: token,
        }),
      );
      for (const common of page.CommonPrefixes ?? []) {
        if (common.Prefix !== undefined) series.push(common.Prefix.slice(prefix.length, -1));
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return series;
  }

  async #readStored(chain: readonly Manifest[]): Promise<OutsideRead> {
    const dir = await mkdtemp(join(tmpdir(), 'vdi-vault-stored-'));
    try {
      const files: string[] = [];
      for (const [index, layer] of chain.entries()) {
        const file = join(dir, `${index}.vhd`);
        const object = await this.#s3.send(
          new GetObjectCommand({ Bucket: this.#location.bucket, Key: layer.objectKey }),
        );
        await pipeline(object.Body as Readable, createWriteStream(file));
        files.push(file);
      }
      return await readVhdChainOutside(files);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

function expectSame(
  read: { reader: string; size: number; sha256: string },
  sha256: string,
  size: number,
  what: string,
) {
  if (read.size !== size) {
    throw new Error(
      `outside check: ${read.reader} sees ${read.size} bytes in the ${what}, the disk has ${size}`,
    );
  }
  if (read.sha256 !== sha256) {
    throw new Error(`outside check: ${read.reader} reads the ${what} differently from the host's content`);
  }
}

function recorded<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('outside check: the simulator is not recording transfers');
  return value;
}
