import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importIntoVdi } from '../../lambdas/restore/import-vdi.ts';
import { XapiSession } from '../../lambdas/xapi/index.ts';
import type { Fault } from '../../world/xapi-simulator/index.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { readObject } from '../world/s3.ts';

const MiB = 1024 * 1024;

describe('restore failures', () => {
  let world: BackupWorld;
  let srUuid: string;
  beforeAll(async () => {
    world = await startBackupWorld({ vdi: { virtualSize: 40 * MiB, populate: 'generated' } });
    srUuid = world.sim.srs.shared.uuid;
    expect((await world.backup()).status).toBe('SUCCEEDED');
    world.sim.writeDisk(world.vdiUuid, 0, Buffer.alloc(MiB, 7));
    expect((await world.backup()).status).toBe('SUCCEEDED');
  });
  afterAll(async () => {
    await world.close();
  });

  /** Runs a restore expected to fail and checks the host is left as it was. */
  async function expectFailedRestore(input: Record<string, unknown>, cause: RegExp, error?: string) {
    const before = await world.vdiUuids();
    const run = await world.restore({ vdiUuid: world.vdiUuid, srUuid, ...input });
    expect(run.status).toBe('FAILED');
    if (error) expect(run.error).toBe(error);
    expect(run.cause).toMatch(cause);
    expect(await world.vdiUuids()).toEqual(before);
    expect(world.sim.openTasks()).toEqual([]);
    expect(world.sim.openSessions()).toEqual([]);
    return run;
  }

  describe.each(['replay', 'merge'])('faults during a %s import', (strategy) => {
    const cases: { name: string; fault: Fault; cause: RegExp }[] = [
      {
        name: 'a dropped connection',
        fault: { kind: 'drop-connection', on: 'import', afterBytes: 3 * MiB },
        cause: /VDI_IO_ERROR|socket|closed|ECONNRESET|terminated/i,
      },
      {
        name: 'a task failed by the host',
        fault: {
          kind: 'fail-task-after-body',
          on: 'import',
          code: 'VDI_IO_ERROR',
          params: ['Device I/O errors'],
        },
        cause: /import failed: VDI_IO_ERROR \[Device I\/O errors\]/,
      },
      {
        name: 'SR_FULL on create',
        fault: { kind: 'rpc-error', method: 'VDI.create', code: 'SR_FULL', params: ['1', '2'] },
        cause: /VDI.create failed: SR_FULL/,
      },
      {
        name: 'a host that refuses the import',
        fault: { kind: 'refuse-transfer', on: 'import', status: 500 },
        cause: /HTTP 500/,
      },
    ];
    it.each(cases)(
      '$name destroys the VDI and the task, logs out, and names the cause',
      async ({ fault, cause }) => {
        // Armed until cleared: the import's redirect probe is a transfer too.
        world.sim.injectFault(fault);
        try {
          await expectFailedRestore({ strategy }, cause);
        } finally {
          world.sim.clearFaults();
        }
      },
    );
  });

  it('keeps the partial VDI when asked, marked in progress', async () => {
    const before = await world.vdiUuids();
    world.sim.injectFault({ kind: 'fail-task-after-body', on: 'import', code: 'VDI_IO_ERROR' });
    const run = await world.restore({
      vdiUuid: world.vdiUuid,
      srUuid,
      keepPartial: true,
      strategy: 'replay',
    });
    world.sim.clearFaults();
    expect(run.status).toBe('FAILED');
    const kept = (await world.vdiUuids()).filter((uuid) => !before.includes(uuid));
    expect(kept).toHaveLength(1);
    expect(world.sim.vdiRecord(kept[0]!)!.other_config).toMatchObject({ 'vdi-vault-restore': 'in-progress' });
    expect(world.sim.openTasks()).toEqual([]);
    expect(world.sim.openSessions()).toEqual([]);
    world.sim.deleteVdi(kept[0]!);
  });

  it('refuses a thick SR that cannot take VHD imports, saying so', async () => {
    const thick = world.sim.addSr({ nameLabel: 'LVM', type: 'lvm', shared: true, prezeroed: false });
    const before = await world.vdiUuids();
    const transfersBefore = world.sim.transfers().length;
    const run = await world.restore({ vdiUuid: world.vdiUuid, srUuid: thick.uuid });
    expect(run.status).toBe('FAILED');
    expect(run.cause).toMatch(/cannot take VHD imports \(thick-provisioned\)/);
    // On the host: the import it tried was a VHD one into a VDI on the thick SR, refused before any block
    // landed, and that VDI is gone again.
    const imports = world.sim.transfers().slice(transfersBefore);
    expect(imports.length).toBeGreaterThan(0);
    for (const transfer of imports) {
      expect(transfer).toMatchObject({ direction: 'import', format: 'vhd', outcome: 'failure', bytes: 0 });
      expect(before, 'the import target is a VDI the restore made').not.toContain(transfer.vdiUuid);
      expect(world.sim.vdiRecord(transfer.vdiUuid), 'the refused VDI is destroyed').toBeUndefined();
    }
    expect(await world.vdiUuids()).toEqual(before);
    expect(world.sim.openTasks()).toEqual([]);
    expect(world.sim.openSessions()).toEqual([]);
  });

  describe('bad input creates nothing on the host', () => {
    it.each([
      [{ vdiUuid: undefined }, /^vdiUuid: is missing/],
      [{ vdiUuid: 'abc' }, /^vdiUuid: "abc" is not a uuid/],
      [{ srUuid: 'nope' }, /^srUuid: "nope" is not a uuid/],
      [{ strategy: 'fast' }, /^strategy: "fast" is not a strategy/],
      [{ restorePoint: 'yesterday' }, /^restorePoint: "yesterday" is neither/],
      [{ keepPartial: 'yes' }, /^keepPartial: must be true or false/],
      [{ vdiUuids: ['x'] }, /^vdiUuids: is not a field of the restore input/],
    ])('%j', async (input, cause) => {
      await expectFailedRestore(input, cause, 'InputValidationError');
    });

    it('an unknown restore point lists the nearest that exist', async () => {
      const ids = (await world.manifests()).map((m) => m.backupId);
      const run = await expectFailedRestore(
        { restorePoint: '20200101T000000.000Z-full' },
        /^restorePoint: no backup 20200101T000000.000Z-full/,
        'InputValidationError',
      );
      for (const id of ids) expect(run.cause).toContain(id);
      await expectFailedRestore(
        { restorePoint: '2001-01-01T00:00:00Z' },
        new RegExp(
          `^restorePoint: no restore point .* at or before 2001-01-01T00:00:00Z. The earliest is ${ids[0]}`,
        ),
      );
    });

    it('a VDI without backups', async () => {
      await expectFailedRestore(
        { vdiUuid: '00000000-0000-4000-8000-000000000001' },
        /has no backups in the catalog/,
        'InputValidationError',
      );
    });

    it('an SR that does not exist', async () => {
      await expectFailedRestore(
        { srUuid: '00000000-0000-4000-8000-000000000002' },
        /^srUuid: no SR 00000000-0000-4000-8000-000000000002 in pool lab/,
        'InputValidationError',
      );
    });

    it('a broken chain: an object deleted from S3', async () => {
      const [full] = await world.manifests();
      const saved = await readObject(world.s3, world.bucket, full!.objectKey);
      await world.s3.send(new DeleteObjectCommand({ Bucket: world.bucket, Key: full!.objectKey }));
      try {
        await expectFailedRestore(
          {},
          /broken chain: the object .* of backup .* is missing from S3/,
          'CatalogError',
        );
      } finally {
        await world.s3.send(
          new PutObjectCommand({ Bucket: world.bucket, Key: full!.objectKey, Body: saved }),
        );
      }
    });

    it('an object altered in S3 (same size): replay refuses it by sha256 and destroys the VDI', async () => {
      const manifests = await world.manifests();
      const delta = manifests.at(-1)!;
      const original = await readObject(world.s3, world.bucket, delta.objectKey);
      const altered = Buffer.from(original);
      altered[altered.length - 600]! ^= 0xff; // inside the last block's data: still a valid VHD
      await world.s3.send(
        new PutObjectCommand({ Bucket: world.bucket, Key: delta.objectKey, Body: altered }),
      );
      try {
        await expectFailedRestore({ strategy: 'replay' }, /changed since its backup: sha256/, 'CatalogError');
      } finally {
        await world.s3.send(
          new PutObjectCommand({ Bucket: world.bucket, Key: delta.objectKey, Body: original }),
        );
      }
    });
  });

  it('a body shorter than its Content-Length fails at once, and its task can be destroyed', async () => {
    const session = await XapiSession.login(
      { url: world.sim.url },
      { username: world.sim.username, password: world.sim.password },
    );
    const target = world.sim.addVdi({ virtualSize: 8 * MiB });
    const taskRef = await session.createTask('short body');
    try {
      await expect(
        importIntoVdi(session, {
          vdiRef: target.ref,
          taskRef,
          body: Readable.from([Buffer.alloc(1000)]),
          contentLength: 5000,
        }),
      ).rejects.toThrow(/VDI_IO_ERROR|content-length|length/i);
      await session.destroyTask(taskRef);
      expect(world.sim.openTasks()).toEqual([]);
    } finally {
      await session.logout();
      world.sim.deleteVdi(target.uuid);
    }
  });
});
