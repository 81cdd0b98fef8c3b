// The outside readers themselves: each reads the host's images (the simulator's, written by its own code)
// to the content the host holds, and tells a chain that does not hold it.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startXapiSimulator, type XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { readChainOutside } from '../world/outside-readers.ts';

const MiB = 1024 * 1024;
const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

describe('outside readers of the host images', () => {
  let sim: XapiSimulator;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vdi-vault-outside-test-'));
    sim = await startXapiSimulator({ recordTransfersIn: dir });
  });
  afterAll(async () => {
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function exportTo(name: string, query: string): Promise<string> {
    const auth = `Basic ${Buffer.from(`${sim.username}:${sim.password}`).toString('base64')}`;
    const response = await fetch(`${sim.url}/export_raw_vdi?${query}`, { headers: { authorization: auth } });
    expect(response.status).toBe(200);
    const path = join(dir, name);
    await writeFile(path, Buffer.from(await response.arrayBuffer()));
    return path;
  }

  it.each([
    { format: 'vhd', virtualSize: 64 * MiB, readers: ['qemu-img', 'libvhdi'] },
    { format: 'vhd', virtualSize: 2040 * GiB, readers: ['qemu-img', 'libvhdi'] },
    { format: 'qcow2', virtualSize: 64 * MiB, readers: ['qemu-img', 'qemu-img'] },
    { format: 'qcow2', virtualSize: 3 * TiB, readers: ['qemu-img', 'qemu-img'] },
  ] as const)(
    'a $format full and its delta ($virtualSize bytes) read as the host holds them, and not as another point',
    async ({ format, virtualSize, readers }) => {
      const vdi = sim.addVdi({ virtualSize, imageFormat: format, populate: 'none' });
      sim.writeDisk(vdi.uuid, 7 * MiB, Buffer.alloc(70_000, 3));
      const first = sim.snapshotVdi(vdi.uuid);
      sim.writeDisk(vdi.uuid, 5 * MiB, Buffer.alloc(70_000, 7));
      sim.writeDisk(vdi.uuid, 7 * MiB, Buffer.alloc(600, 0)); // a cluster that became zeros in part
      sim.writeDisk(vdi.uuid, virtualSize - 4096, Buffer.alloc(600, 9));
      const second = sim.snapshotVdi(vdi.uuid);
      const full = await exportTo(`${vdi.uuid}.full`, `vdi=${first.uuid}&format=${format}`);
      const delta = await exportTo(
        `${vdi.uuid}.delta`,
        `vdi=${second.uuid}&format=${format}&base=${first.uuid}`,
      );
      const [atFirst, atSecond] = sim
        .transfers()
        .slice(-2)
        .map((transfer) => transfer.exportedContent!);

      expect(await readChainOutside([full], atFirst!)).toEqual({ reader: readers[0], same: true });
      expect(await readChainOutside([full, delta], atSecond!)).toEqual({ reader: readers[1], same: true });
      expect(await readChainOutside([full, delta], atFirst!)).toMatchObject({
        reader: readers[1],
        same: false,
      });
      expect(await readChainOutside([full], atSecond!)).toMatchObject({ reader: readers[0], same: false });
    },
  );
});
