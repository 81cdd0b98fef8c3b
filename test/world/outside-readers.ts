// Outside readers: implementations of VHD that are not ours, so that what we store and what we send is
// checked by someone else's reading of the format. qemu-img (Debian qemu-utils) reads fulls and merged
// streams; it has no differencing support, so chains go through libvhdi (Debian python3-libvhdi, run with
// Debian's own /usr/bin/python3, where the package installs its module).
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { qemuConvert } from './qemu-img.ts';

const run = promisify(execFile);
const LIBVHDI_SCRIPT = fileURLToPath(new URL('./libvhdi-read.py', import.meta.url));
export const DEBIAN_PYTHON = '/usr/bin/python3';

/** The disk as an outside reader sees it: its length and the sha256 of its bytes. */
export interface OutsideRead {
  readonly reader: 'qemu-img' | 'libvhdi';
  readonly size: number;
  readonly sha256: string;
}

/**
 * Reads a VHD chain, oldest (the full) first. One file: qemu-img converts it to raw. More: libvhdi opens
 * the chain from copies whose parent ids are made to name the file before (see `linkToParent`).
 */
export async function readVhdChainOutside(files: readonly string[]): Promise<OutsideRead> {
  if (files.length === 0) throw new Error('readVhdChainOutside: no files');
  const dir = await mkdtemp(join(tmpdir(), 'vdi-vault-outside-'));
  try {
    if (files.length === 1) {
      const raw = join(dir, 'disk.raw');
      await qemuConvert('vpc', 'raw', files[0]!, raw);
      return { reader: 'qemu-img', size: (await stat(raw)).size, sha256: await sha256OfFile(raw) };
    }
    const linked: string[] = [files[0]!];
    for (const [index, file] of files.entries()) {
      if (index === 0) continue;
      const copy = join(dir, `layer-${index}.vhd`);
      await copyFile(file, copy);
      await linkToParent(copy, linked[index - 1]!);
      linked.push(copy);
    }
    const { stdout } = await run(DEBIAN_PYTHON, [LIBVHDI_SCRIPT, ...linked], { maxBuffer: 1 << 20 });
    const read = JSON.parse(stdout) as { mediaSize: number; sha256: string };
    return { reader: 'libvhdi', size: read.mediaSize, sha256: read.sha256 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
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
