import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

interface Summary {
  backups: { vdi: string; format: string; id: string; kind: string; bytes: number; sha256: string }[];
  restores: {
    vdi: string;
    format: string;
    restorePoint: string;
    strategy: string;
    vdiUuid: string;
    bytes: number;
    seconds: number;
    sha256Match: boolean;
  }[];
  vms: {
    vmUuid: string;
    restorePoint: string;
    disks: number;
    restoredVmUuid: string;
    disksMatch: boolean;
    vifsMatch: boolean;
  }[];
  merges: { backupId: string; bytesCopied: number; bytesUploaded: number; parts: number }[];
  storage: { storedBytes: number; objects: number };
}

describe('npm start', () => {
  it('backs up a vhd disk (a full and three deltas, kept 2: merged in S3 twice), a sparse 3 TiB qcow2 disk (a full and a delta) and a VM twice, restores each disk with each strategy and the VM whole, and ends stdout with the JSON summary', async () => {
    const { stdout, stderr } = await run(
      'npm',
      ['start', '--silent', '--', '--json', '--vdi-size', '64MiB'],
      {
        timeout: 240_000,
      },
    );
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as Summary;
    const [vhdVdi, qcow2Vdi] = [...new Set(summary.backups.map((b) => b.vdi))];
    // What the catalog holds at the end: the vhd disk's oldest kept point is a synthetic full.
    expect(summary.backups.map((b) => [b.vdi, b.format, b.kind])).toEqual([
      [vhdVdi, 'vhd', 'full'],
      [vhdVdi, 'vhd', 'delta'],
      [qcow2Vdi, 'qcow2', 'full'],
      [qcow2Vdi, 'qcow2', 'delta'],
    ]);
    for (const backup of summary.backups) {
      expect(backup.id).toMatch(/^\d{8}T\d{6}\.\d{3}Z-(full|delta)$/);
      expect(backup.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(backup.bytes).toBeGreaterThan(0);
    }
    for (const vdi of [vhdVdi, qcow2Vdi]) {
      const [full, ...deltas] = summary.backups.filter((b) => b.vdi === vdi);
      for (const delta of deltas) expect(delta.bytes).toBeLessThan(full!.bytes);
    }
    // Sparse: a few MiB of a 3 TiB disk, with its tables.
    expect(summary.backups[2]!.bytes).toBeLessThan(64 * 1024 ** 2);
    // The third and fourth backups each merged the oldest kept delta; the second merge made the full.
    expect(summary.merges).toHaveLength(2);
    expect(summary.merges[1]!.backupId).toBe(summary.backups[0]!.id);
    for (const merge of summary.merges) {
      expect(merge.bytesCopied).toBeGreaterThan(0);
      expect(merge.parts).toBeGreaterThan(1);
    }
    const [oldest, latest] = [summary.backups[0]!.id, summary.backups[1]!.id];
    expect(summary.restores.map((r) => [r.vdi, r.format, r.restorePoint, r.strategy, r.sha256Match])).toEqual(
      [
        [vhdVdi, 'vhd', oldest, 'replay', true],
        [vhdVdi, 'vhd', oldest, 'merge', true],
        [vhdVdi, 'vhd', latest, 'replay', true],
        [vhdVdi, 'vhd', latest, 'merge', true],
        [qcow2Vdi, 'qcow2', summary.backups[3]!.id, 'replay', true],
        [qcow2Vdi, 'qcow2', summary.backups[3]!.id, 'merge', true],
      ],
    );
    // Every series' manifests and objects, the VM points, and nothing else (the work areas are emptied).
    expect(summary.storage.objects).toBe(2 * summary.backups.length + 2 * 2 + 2 * 2 + 2);
    expect(summary.storage.storedBytes).toBeGreaterThan(summary.backups.reduce((sum, b) => sum + b.bytes, 0));
    for (const restore of summary.restores) {
      expect(restore.vdiUuid).toMatch(/^[0-9a-f-]{36}$/);
      expect(restore.bytes).toBeGreaterThan(0);
      expect(restore.seconds).toBeGreaterThan(0);
    }
    // The demo VM: backed up twice, its latest point restored into a new VM (proved at the simulator in
    // test/vm/vm-restore.test.ts; here the demo's own comparison).
    expect(summary.vms).toHaveLength(1);
    expect(summary.vms[0]).toMatchObject({ disks: 2, disksMatch: true, vifsMatch: true });
    expect(summary.vms[0]!.restorePoint).toMatch(/^\d{8}T\d{6}\.\d{3}Z-vm$/);
    expect(summary.vms[0]!.restoredVmUuid).not.toBe(summary.vms[0]!.vmUuid);
    // People read the same on stderr with --json: each disk, its size and format.
    expect(stderr).toContain(`qcow2 disk: VDI ${qcow2Vdi}, qcow2, 3.0 TiB`);
    expect(stderr).toContain(`vhd disk: VDI ${vhdVdi}, vhd, 64.0 MiB`);
  });

  it('refuses a size it cannot read, naming the flag', async () => {
    const failure = await run('npm', ['start', '--silent', '--', '--qcow2-size', 'big'], {
      timeout: 60_000,
    }).catch((error: { code: number; stderr: string }) => error);
    expect(failure).toMatchObject({ code: 1 });
    expect((failure as { stderr: string }).stderr).toMatch(
      /--qcow2-size: "big" is not a disk size; use e\.g\./,
    );
  });
});
