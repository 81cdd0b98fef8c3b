/**
 * The XAPI simulator in its own process for the export measurements, so its CPU and memory are not
 * counted with the export under test. `node bench/sim-server.ts NAME=SIZE[:qcow2][:spread]…` adds one disk
 * per argument, prints one JSON line `{"url","username","password","srUuid","vdis":{NAME:{"uuid","virtualSize"}}}`
 * and serves until SIGTERM or until its stdin closes.
 *
 * - Format: a VHD-backed VDI, or with `:qcow2` a qcow2-backed one (`imageFormat: 'qcow2'`), so its
 *   `format=qcow2` export is the host's qcow2 layout, allocation from the image's metadata.
 * - Allocation: generated (every block present, content made on demand: no memory cost), or with
 *   `:spread` no block but one 64 KiB write of seeded bytes every SPREAD_SPACING (4 GiB), from offset 0
 *   across the whole disk: a 3 TiB disk gets 768 writes, so its qcow2 export has 768 L2 tables (one
 *   maps 512 MiB, so every eighth of them) and 48 MiB of data clusters spread over the full range. A
 *   write is stored as its whole 2 MiB block in this process (768 × 2 MiB = 1.5 GiB for 3 TiB), not in
 *   the export's. The bench's 1 GiB qcow2 disk is generated (as the VHD ones), its 3 TiB one spread.
 */
import { parseSize } from '../world/xapi-simulator/cli-args.ts';
import { startXapiSimulator } from '../world/xapi-simulator/index.ts';

/** Distance between two writes of a spread disk. */
const SPREAD_SPACING = 4 * 1024 ** 3;
/** One write of a spread disk: one qcow2 cluster. */
const SPREAD_WRITE = 64 * 1024;

const sim = await startXapiSimulator();
const vdis: Record<string, { uuid: string; virtualSize: number }> = {};
for (const [index, spec] of process.argv.slice(2).entries()) {
  const [name, rest] = spec.split('=');
  const [size, ...flags] = (rest ?? '').split(':');
  const unknown = flags.filter((flag) => flag !== 'qcow2' && flag !== 'spread');
  if (!name || !size || unknown.length) throw new Error(`expected NAME=SIZE[:qcow2][:spread], got ${spec}`);
  const virtualSize = parseSize(size);
  const spread = flags.includes('spread');
  const seed = index + 1;
  const vdi = sim.addVdi({
    virtualSize,
    nameLabel: `bench ${name}`,
    populate: spread ? 'none' : 'generated',
    seed,
    ...(flags.includes('qcow2') ? { imageFormat: 'qcow2' as const } : {}),
  });
  if (spread) {
    for (let offset = 0, n = 0; offset + SPREAD_WRITE <= virtualSize; offset += SPREAD_SPACING, n++) {
      sim.writeDisk(vdi.uuid, offset, seededBytes(seed, n, SPREAD_WRITE));
    }
  }
  vdis[name] = { uuid: vdi.uuid, virtualSize };
}
process.stdout.write(
  `${JSON.stringify({ url: sim.url, username: sim.username, password: sim.password, srUuid: sim.srs.shared.uuid, vdis })}\n`,
);
const stop = (): void => void sim.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The bench holds our stdin open: if it dies without stopping us (a crash, SIGKILL), the pipe closes.
process.stdin.on('end', stop).on('error', stop).resume();

/** Pseudo-random bytes from (seed, n), xorshift32: repeatable, never all zeros (a write must allocate). */
function seededBytes(seed: number, n: number, length: number): Uint8Array {
  const words = new Uint32Array(length / 4);
  let x = (Math.imul(seed, 0x9e3779b1) ^ Math.imul(n + 1, 0x85ebca6b)) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return new Uint8Array(words.buffer);
}
