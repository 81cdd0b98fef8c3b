/** qemu-img for the simulator's qcow2 tests: the outside reader and writer, never our codec. */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const CLUSTER = 64 * 1024;

export async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'sim-qcow2-'));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `qemu-img check -f qcow2`: throws unless the image is clean. */
export async function qemuCheck(path: string): Promise<void> {
  await run('qemu-img', ['check', '-f', 'qcow2', path]);
}

/** The image as raw bytes (`qemu-img convert -f qcow2 -O raw`), after a `qemu-img check`. */
export async function qcow2ToRaw(dir: string, image: Uint8Array, name = 'image'): Promise<Buffer> {
  const source = join(dir, `${name}.qcow2`);
  const target = join(dir, `${name}.raw`);
  await writeFile(source, image);
  await qemuCheck(source);
  await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', source, target]);
  return readFile(target);
}

/** An image qemu-img writes from raw bytes (`convert -O qcow2 -o cluster_size=65536[,options]`). */
export async function rawToQcow2(
  dir: string,
  raw: Uint8Array,
  options: string[] = [],
  extraArgs: string[] = [],
): Promise<Buffer> {
  const source = join(dir, 'source.raw');
  const target = join(dir, 'written.qcow2');
  await writeFile(source, raw);
  await run('qemu-img', [
    'convert',
    ...extraArgs,
    '-f',
    'raw',
    '-O',
    'qcow2',
    '-o',
    ['cluster_size=65536', ...options].join(','),
    source,
    target,
  ]);
  return readFile(target);
}

/** qemu-img's map of an image: the guest ranges holding data. */
export async function qemuDataExtents(path: string): Promise<{ start: number; length: number }[]> {
  const { stdout } = await run('qemu-img', ['map', '--output=json', '-f', 'qcow2', path], {
    maxBuffer: 64 * 1024 * 1024,
  });
  return (JSON.parse(stdout) as { start: number; length: number; data: boolean }[])
    .filter((extent) => extent.data)
    .map(({ start, length }) => ({ start, length }));
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The host exporter's fixed-point sizes (docs/design.md § QCOW2 stream), computed here independently. */
export function expectedClusters(virtualSize: number, l2Tables: number, data: number): number {
  const l1c = Math.ceil(Math.ceil(Math.ceil(virtualSize / CLUSTER) / 8192) / 8192);
  const t0 = 1 + l1c + l2Tables + data;
  let rb = Math.ceil(t0 / 32768);
  let rt = Math.ceil(rb / 8192);
  while (Math.ceil((t0 + rt + rb) / 32768) > rb) {
    rb = Math.ceil((t0 + rt + rb) / 32768);
    rt = Math.ceil(rb / 8192);
  }
  return t0 + rt + rb;
}

/** A u64 table entry's offset (bits 9..55) and whether bit 63 ("copied") is set. */
export function tableEntry(image: Buffer, at: number): { offset: number; copied: boolean; raw: bigint } {
  const raw = image.readBigUInt64BE(at);
  return { offset: Number(raw & 0x00ff_ffff_ffff_fe00n), copied: raw >> 63n === 1n, raw };
}
