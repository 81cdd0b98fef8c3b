import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

describe('npm start', () => {
  it('runs a full and two deltas, restores with each strategy, and ends stdout with the JSON summary', async () => {
    const { stdout } = await run('npm', ['start', '--silent', '--', '--json', '--vdi-size', '64MiB'], {
      timeout: 120_000,
    });
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      backups: { id: string; kind: string; bytes: number; sha256: string }[];
      restores: { strategy: string; vdiUuid: string; bytes: number; seconds: number; sha256Match: boolean }[];
    };
    expect(summary.backups.map((b) => b.kind)).toEqual(['full', 'delta', 'delta']);
    const [full, ...deltas] = summary.backups;
    for (const backup of summary.backups) {
      expect(backup.id).toMatch(/^\d{8}T\d{6}\.\d{3}Z-(full|delta)$/);
      expect(backup.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(backup.bytes).toBeGreaterThan(0);
    }
    for (const delta of deltas) expect(delta.bytes).toBeLessThan(full!.bytes);
    expect(summary.restores.map((r) => [r.strategy, r.sha256Match])).toEqual([
      ['replay', true],
      ['merge', true],
    ]);
    for (const restore of summary.restores) {
      expect(restore.vdiUuid).toMatch(/^[0-9a-f-]{36}$/);
      expect(restore.bytes).toBeGreaterThan(0);
      expect(restore.seconds).toBeGreaterThan(0);
    }
  });
});
