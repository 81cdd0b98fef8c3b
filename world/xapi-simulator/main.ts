/**
 * Standalone simulator: `npm run sim -- --port 0`. Prints exactly one JSON line on stdout,
 * `{"url","memberUrl","username","password","vdis":[{"uuid","srUuid","virtualSize","imageFormat"}],
 * "vms":[{"uuid","nameLabel","disks":[vdi uuids],"networks"}]}` (plus
 * "caPem" with --tls), logs to stderr, and serves until SIGINT or SIGTERM, then exits 0. Options: cli-args.ts.
 * imageFormat is the seeded VDI's sm_config["image-format"] (--image-format, else the SR's: vhd, or qcow2
 * over 2040 GiB). With --vdi-image FILE the VDI's content is the raw image, read 2 MiB block by block (never
 * whole), and only its blocks that are not all zeros are written, so a sparse image stays sparse; its size is
 * the file's, or --vdi-size when that is bigger. Sparse sizes up to 16 TiB (a real host's qcow2 VDIs go to
 * 16,381 GiB) start at once: nothing is done per block of the disk, only per allocated block. Bad options and unreadable images: `xapi simulator: <message>` on
 * stderr and exit code 2. The seeded VM ("demo vm", halted) has the seeded VDI as its boot disk, a 64 MiB
 * second disk, an empty CD drive and two VIFs (the management network and "storage", VLAN 42).
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { DEFAULT_VDI_SIZE, parseCliArgs, USAGE } from './cli-args.ts';
import type { CliOptions } from './cli-args.ts';
import { BLOCK_SIZE, MAX_VHD_SIZE, startXapiSimulator } from './index.ts';
import type { XapiSimulator } from './index.ts';
import { addDemoVm } from './demo-vm.ts';

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);

/** The --vdi-image file, opened and checked before the simulator starts, with the VDI size it gives. */
interface VdiImage {
  readonly path: string;
  readonly file: FileHandle;
  readonly size: number;
}

async function openVdiImage(path: string, vdiSize: number | undefined): Promise<VdiImage> {
  let file: FileHandle;
  let size: number;
  try {
    file = await open(path, 'r');
  } catch (error) {
    throw new Error(`--vdi-image ${path}: cannot open it (${errorMessage(error)})`, { cause: error });
  }
  try {
    const stats = await file.stat();
    if (!stats.isFile()) throw new Error(`--vdi-image ${path}: not a regular file`);
    size = stats.size;
    if (size <= 0 || size % 512 !== 0) {
      throw new Error(
        `--vdi-image ${path}: its size, ${size} bytes, is not a positive multiple of 512 bytes`,
      );
    }
    if (vdiSize !== undefined && vdiSize < size) {
      throw new Error(
        `--vdi-size ${vdiSize} is smaller than the --vdi-image ${path} (${size} bytes): give at least ${size}`,
      );
    }
  } catch (error) {
    await file.close();
    throw error;
  }
  return { path, file, size };
}

/**
 * Copies the image into the VDI one 2 MiB block at a time (a block's bytes only in memory while it is
 * copied), skipping all-zero blocks so they stay unallocated. → the count of blocks written.
 */
async function loadVdiImage(sim: XapiSimulator, vdiUuid: string, image: VdiImage): Promise<number> {
  const buffer = Buffer.alloc(BLOCK_SIZE);
  let written = 0;
  for (let offset = 0; offset < image.size; offset += BLOCK_SIZE) {
    const length = Math.min(BLOCK_SIZE, image.size - offset);
    let filled = 0;
    while (filled < length) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await image.file.read(buffer, filled, length - filled, offset + filled));
      } catch (error) {
        throw new Error(`--vdi-image ${image.path}: cannot read it (${errorMessage(error)})`, {
          cause: error,
        });
      }
      if (bytesRead === 0) {
        throw new Error(
          `--vdi-image ${image.path}: ended at ${offset + filled} bytes, expected ${image.size} (did it shrink?)`,
        );
      }
      filled += bytesRead;
    }
    const bytes = buffer.subarray(0, length);
    if (bytes.equals(ZERO_BLOCK.subarray(0, length))) continue;
    sim.writeDisk(vdiUuid, offset, bytes); // copies the bytes: the buffer is reused
    written += 1;
  }
  return written;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The seeded VDI's size: --vdi-size, else the image's, else the default. */
function vdiSizeOf(options: CliOptions, image: VdiImage | undefined): number {
  return options.vdiSize ?? image?.size ?? DEFAULT_VDI_SIZE;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stderr.write(`${USAGE}\n`);
    return;
  }
  const options = parseCliArgs(argv);
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const image =
    options.vdiImage === undefined ? undefined : await openVdiImage(options.vdiImage, options.vdiSize);
  const virtualSize = vdiSizeOf(options, image);
  if (options.imageFormat === 'vhd' && virtualSize > MAX_VHD_SIZE) {
    await image?.file.close();
    throw new Error(
      `--image-format vhd holds at most ${MAX_VHD_SIZE} bytes (2040 GiB), the VDI is ${virtualSize}`,
    );
  }
  const sim = await startXapiSimulator({
    tls: options.tls,
    port: options.port,
    memberPort: options.memberPort,
    username: options.username,
    password: options.password,
    readerStallTimeoutMs: options.readerStallTimeoutMs,
    log,
  });
  let vdi: ReturnType<XapiSimulator['addVdi']>;
  let imageFormat: unknown;
  try {
    vdi = sim.addVdi({
      virtualSize,
      nameLabel: 'demo disk',
      populate: options.populate,
      onMember: options.member,
      seed: 1,
      ...(options.imageFormat === undefined ? {} : { imageFormat: options.imageFormat }),
    });
    if (image !== undefined) {
      const blocks = await loadVdiImage(sim, vdi.uuid, image);
      log(`xapi simulator: ${image.path}: ${blocks} of ${Math.ceil(image.size / BLOCK_SIZE)} blocks written`);
    }
    const smConfig = sim.vdiRecord(vdi.uuid)?.sm_config as Record<string, string> | undefined;
    imageFormat = smConfig?.['image-format'];
  } catch (error) {
    await sim.close();
    throw error;
  } finally {
    await image?.file.close();
  }
  const vm = addDemoVm(sim, vdi.uuid, { onMember: options.member });
  for (const fault of options.faults) sim.injectFault(fault);
  const ready = {
    url: sim.url,
    memberUrl: sim.memberUrl,
    username: sim.username,
    password: sim.password,
    vdis: [{ uuid: vdi.uuid, srUuid: vdi.srUuid, virtualSize, imageFormat }],
    vms: [{ uuid: vm.uuid, nameLabel: vm.nameLabel, disks: vm.disks, networks: 2 }],
    ...(sim.caPem === undefined ? {} : { caPem: sim.caPem }),
  };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  log(
    `xapi simulator: master ${sim.url}, member ${sim.memberUrl}, vdi ${vdi.uuid} (${virtualSize} bytes, ${String(imageFormat)})`,
  );

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log(`xapi simulator: ${signal}, closing`);
    sim.close().then(
      () => process.exit(0),
      (error: unknown) => {
        log(String(error));
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((error: unknown) => {
  process.stderr.write(`xapi simulator: ${errorMessage(error)}\n`);
  process.exit(2);
});
