// Outside readers: implementations of VHD and QCOW2 that are not ours, so that what we store and what we
// send is checked by someone else's reading of the format. qemu-img (Debian qemu-utils) checks and reads
// QCOW2 images and chains and VHD fulls and merged streams; it has no differencing VHD support, so VHD
// chains go through libvhdi (Debian python3-libvhdi, run with Debian's own /usr/bin/python3, where the
// package installs its module).
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, open, rm } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { SimDiskContent } from '../../world/xapi-simulator/index.ts';
import { qemuCheck, qemuImg, qemuVirtualSize } from './qemu-img.ts';

const run = promisify(execFile);
const LIBVHDI_SCRIPT = fileURLToPath(new URL('./libvhdi-read.py', import.meta.url));
export const DEBIAN_PYTHON = '/usr/bin/python3';

export type ImageFormat = 'vhd' | 'qcow2';
export type OutsideReader = 'qemu-img' | 'libvhdi';

/** What a file holds, by its first bytes: a VHD starts with its footer copy, a QCOW2 with its header. */
export async function imageFormatOf(path: string): Promise<ImageFormat> {
  const head = await readAt(path, 0, 8);
  if (head.toString('latin1') === 'conectix') return 'vhd';
  if (head.subarray(0, 4).equals(Buffer.from('QFI\xfb', 'latin1'))) return 'qcow2';
  throw new Error(`${path}: neither a VHD nor a QCOW2 image (starts ${head.toString('hex')})`);
}

/**
 * Reads an image chain (oldest, the full, first; every file of one format) with an outside reader and
 * returns which reader and whether it sees exactly `content`: same virtual size, same bytes.
 * - QCOW2: `qemu-img check` on every layer; a delta is a standalone image whose unallocated clusters mean
 *   "unchanged", so copies are chained with `qemu-img rebase -u` (the backing file is set, nothing else
 *   changes) and `qemu-img compare` reads the newest against the content written as a sparse raw file.
 * - VHD, one file: `qemu-img compare -f vpc` the same way. VHD chain: libvhdi reads it from copies whose
 *   parent ids name the file before (`linkToParent`), block by block (`compareVhdChainWithLibvhdi`).
 */
export async function readChainOutside(
  files: readonly string[],
  content: SimDiskContent,
): Promise<{ reader: OutsideReader; same: boolean; why?: string }> {
  if (files.length === 0) throw new Error('readChainOutside: no files');
  const formats = new Set(await Promise.all(files.map(imageFormatOf)));
  if (formats.size !== 1) throw new Error(`readChainOutside: a chain of mixed formats ${[...formats]}`);
  const format = [...formats][0]!;
  const dir = await mkdtemp(join(tmpdir(), 'vdi-vault-outside-'));
  try {
    if (format === 'vhd' && files.length > 1) return await compareVhdChainWithLibvhdi(files, content, dir);
    let newest = files[0]!;
    if (format === 'qcow2') {
      for (const file of files) await qemuCheck(file, 'qcow2');
      for (const [index, file] of files.entries()) {
        if (index === 0) continue;
        const copy = join(dir, `layer-${index}.qcow2`);
        await copyFile(file, copy);
        await qemuImg('rebase', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b', resolve(newest), copy);
        newest = copy;
      }
    }
    const qemuFormat = format === 'vhd' ? 'vpc' : 'qcow2';
    const size = await qemuVirtualSize(newest, qemuFormat);
    if (size !== content.virtualSize) {
      return { reader: 'qemu-img', same: false, why: `${size} bytes, not ${content.virtualSize}` };
    }
    const raw = join(dir, 'content.raw');
    await writeSparseRaw(raw, content);
    const compared = await run('qemu-img', ['compare', '-f', qemuFormat, '-F', 'raw', newest, raw]).then(
      () => ({ same: true }),
      (error: { code?: number; stdout?: string; stderr?: string }) => {
        if (error.code === 1) return { same: false, why: error.stdout?.trim() };
        throw new Error(`qemu-img compare failed: ${error.stderr ?? String(error)}`);
      },
    );
    return { reader: 'qemu-img', ...compared };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The content as a raw file of its virtual size, with holes where the host holds no block. */
async function writeSparseRaw(path: string, content: SimDiskContent): Promise<void> {
  const file = await open(path, 'w');
  try {
    await file.truncate(content.virtualSize);
    for (const index of content.allocatedBlocks()) {
      const block = content.readBlock(index);
      const position = index * block.length;
      const length = Math.min(block.length, content.virtualSize - position);
      await file.write(block, 0, length, position);
    }
  } finally {
    await file.close();
  }
}

/**
 * libvhdi reads, block by block, every 2 MiB block that any layer's BAT lists or the host holds (the rest
 * is absent everywhere, zeros on both sides), and each must hash as the host's block does.
 */
async function compareVhdChainWithLibvhdi(
  files: readonly string[],
  content: SimDiskContent,
  dir: string,
): Promise<{ reader: OutsideReader; same: boolean; why?: string }> {
  const linked: string[] = [files[0]!];
  for (const [index, file] of files.entries()) {
    if (index === 0) continue;
    const copy = join(dir, `layer-${index}.vhd`);
    await copyFile(file, copy);
    await linkToParent(copy, linked[index - 1]!);
    linked.push(copy);
  }
  const blocks = new Set(content.allocatedBlocks());
  for (const file of files) for (const index of await batPresentBlocks(file)) blocks.add(index);
  const indexes = [...blocks].sort((a, b) => a - b);
  const { stdout } = await run(
    DEBIAN_PYTHON,
    [LIBVHDI_SCRIPT, String(HOST_BLOCK_SIZE), indexes.join(','), ...linked],
    { maxBuffer: 64 << 20 },
  );
  const read = JSON.parse(stdout) as { mediaSize: number; blocks: Record<string, string> };
  if (read.mediaSize !== content.virtualSize) {
    return { reader: 'libvhdi', same: false, why: `${read.mediaSize} bytes, not ${content.virtualSize}` };
  }
  for (const index of indexes) {
    const block = content.readBlock(index);
    const length = Math.min(block.length, content.virtualSize - index * block.length);
    const expected = createHash('sha256').update(block.subarray(0, length)).digest('hex');
    if (read.blocks[String(index)] !== expected) {
      return { reader: 'libvhdi', same: false, why: `block ${index} differs` };
    }
  }
  return { reader: 'libvhdi', same: true };
}

/** The host's VHDs have 2 MiB blocks (the simulator's SparseDisk blocks are the same size). */
const HOST_BLOCK_SIZE = 2 * 1024 * 1024;

/** Indexes of the blocks a VHD's BAT lists (footer copy at 0 → dynamic header → table offset and size). */
async function batPresentBlocks(path: string): Promise<number[]> {
  const footer = await readAt(path, 0, 512);
  const header = await readAt(path, Number(footer.readBigUInt64BE(16)), 1024);
  const tableOffset = Number(header.readBigUInt64BE(16));
  const entries = header.readUInt32BE(28);
  if (header.readUInt32BE(32) !== HOST_BLOCK_SIZE) throw new Error(`${path}: blocks are not 2 MiB`);
  const bat = await readAt(path, tableOffset, entries * 4);
  const present: number[] = [];
  for (let index = 0; index < entries; index++) {
    if (bat.readUInt32BE(index * 4) !== 0xffffffff) present.push(index);
  }
  return present;
}

/**
 * A host delta names its parent by the unique id of the base's VHD file on the host, never by our objects,
 * and libvhdi refuses a parent whose footer id differs. So, in a copy, the header's parent unique id
 * (header bytes 40–55) becomes the parent file's footer unique id (footer bytes 68–83) and the header's
 * checksum (bytes 36–39: the one's complement of the sum of its other bytes) is recomputed.
 */
export async function linkToParent(deltaPath: string, parentPath: string): Promise<void> {
  const parentFooter = await readAt(parentPath, 0, 512);
  const delta = await open(deltaPath, 'r+');
  try {
    const footer = Buffer.alloc(512);
    await delta.read(footer, 0, 512, 0);
    const headerOffset = Number(footer.readBigUInt64BE(16));
    const header = Buffer.alloc(1024);
    await delta.read(header, 0, 1024, headerOffset);
    if (header.toString('latin1', 0, 8) !== 'cxsparse') {
      throw new Error(`${deltaPath}: no dynamic header at ${headerOffset}`);
    }
    parentFooter.copy(header, 40, 68, 84);
    header.writeUInt32BE(0, 36);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.writeUInt32BE(~sum >>> 0, 36);
    await delta.write(header, 0, 1024, headerOffset);
  } finally {
    await delta.close();
  }
}

async function readAt(path: string, position: number, length: number): Promise<Buffer> {
  const file = await open(path, 'r');
  try {
    const bytes = Buffer.alloc(length);
    await file.read(bytes, 0, length, position);
    return bytes;
  } finally {
    await file.close();
  }
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
