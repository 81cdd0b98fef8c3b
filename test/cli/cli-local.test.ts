/**
 * Every command end to end in --local mode, spawned as a real process against the XAPI simulator and the
 * Swift S3 world: human output, the --json documents, exit codes, and `watch` from another process.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, deleteTestBucket, s3World } from '../world/s3.ts';
import { startXapiSimulator, type XapiSimulator } from '../../world/xapi-simulator/index.ts';
import { runCli, startCli } from './run-cli.ts';

const MiB = 1024 * 1024;
const EXECUTION_ID = /^(backup|restore)-\d{8}T\d{9}Z-[0-9a-f]{6}$/;
const BACKUP_ID = /^\d{8}T\d{6}\.\d{3}Z-(full|delta)$/;

describe('vdi-vault --local', () => {
  const world = s3World();
  let sim: XapiSimulator;
  let vdiUuid: string;
  let bucket: string;
  let stateDir: string;
  let env: NodeJS.ProcessEnv;
  let local: string[];
  const executions: { finished?: string; failed?: string } = {};

  beforeAll(async () => {
    sim = await startXapiSimulator();
    vdiUuid = sim.addVdi({ virtualSize: 16 * MiB, populate: 'scattered', nameLabel: 'cli-disk' }).uuid;
    bucket = await createTestBucket(world.client, 'cli');
    stateDir = await mkdtemp(join(tmpdir(), 'vdi-vault-cli-'));
    // Secrets through the environment, as the docs recommend: they must never show up in output.
    env = {
      VDI_VAULT_XAPI_PASSWORD: sim.password,
      VDI_VAULT_S3_ACCESS_KEY: world.credentials.accessKeyId,
      VDI_VAULT_S3_SECRET_KEY: world.credentials.secretAccessKey,
    };
    local = [
      '--local',
      '--xapi-url',
      sim.url,
      '--xapi-user',
      sim.username,
      '--s3-endpoint',
      world.endpoint,
      '--bucket',
      bucket,
      '--pool',
      'lab',
      '--state-dir',
      stateDir,
    ];
  });

  afterAll(async () => {
    await sim?.close();
    await deleteTestBucket(world.client, bucket);
    await rm(stateDir, { recursive: true, force: true });
  });

  const cli = (...args: string[]) => runCli([...args, ...local], env);
  const manifestsOf = async () => {
    const { stdout } = await cli('list', vdiUuid, '--json');
    return (
      JSON.parse(stdout) as { restorePoints: { backupId: string; snapshotUuid: string; chain: string[] }[] }
    ).restorePoints;
  };

  it('backup: a full with progress on stderr and a summary table, its execution recorded for watch', async () => {
    const { code, stdout, stderr } = await cli('backup', vdiUuid);
    expect(code, stderr).toBe(0);
    const executionId = /execution (\S+) \(follow it with: vdi-vault watch --local \1\)/.exec(stderr)?.[1];
    expect(executionId).toMatch(EXECUTION_ID);
    executions.finished = executionId!;
    expect(stderr).toContain('→ Snapshot');
    expect(stderr).toContain('✓ execution succeeded');
    expect(stdout).toMatch(/^VDI\s+RESULT\s+BACKUP\s+KIND\s+SIZE\s+BLOCKS\s+TIME$/m);
    expect(stdout).toContain(`${vdiUuid}  ok`);
    expect(stdout).toContain('full because first backup');
    expect(stdout + stderr).not.toContain(sim.password);
    expect(existsSync(join(stateDir, `${executionId}.jsonl`))).toBe(true);
  });

  it('backup --json: a delta after writes, as one JSON document', async () => {
    sim.writeDisk(vdiUuid, 5 * MiB, Buffer.alloc(64 * 1024, 7));
    const { code, stdout, stderr } = await cli('backup', vdiUuid, '--json');
    expect(code, stderr).toBe(0);
    expect(stderr).toBe('');
    const document = JSON.parse(stdout) as Record<string, unknown>;
    expect(Object.keys(document)).toEqual(['executionId', 'status', 'result']);
    expect(document.executionId).toMatch(EXECUTION_ID);
    expect(document.status).toBe('SUCCEEDED');
    expect(document.result).toMatchObject({
      pool: 'lab',
      succeeded: 1,
      failed: 0,
      outcomes: [
        {
          vdiUuid,
          status: 'succeeded',
          kind: 'delta',
          bytes: expect.any(Number),
          sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
        },
      ],
    });
  });

  it('list: restore points oldest first, with the chain each needs (table and --json)', async () => {
    const points = await manifestsOf();
    expect(points).toHaveLength(2);
    const [full, delta] = points as unknown as [Record<string, unknown>, Record<string, unknown>];
    expect(Object.keys(full).sort()).toEqual(
      [
        'backupId',
        'bytes',
        'chain',
        'chainBytes',
        'endedAt',
        'kind',
        'parentBackupId',
        'presentBlocks',
        'sha256',
        'snapshotUuid',
        'startedAt',
        'virtualSize',
      ].sort(),
    );
    expect(full).toMatchObject({
      kind: 'full',
      parentBackupId: null,
      chain: [full.backupId],
      virtualSize: 16 * MiB,
    });
    expect(delta).toMatchObject({
      kind: 'delta',
      parentBackupId: full.backupId,
      chain: [full.backupId, delta.backupId],
    });
    expect(delta.chainBytes).toBe((full.bytes as number) + (delta.bytes as number));
    expect(full.backupId).toMatch(BACKUP_ID);

    // What the series costs, as the S3 server lists it: two manifests and two objects.
    const { storage } = JSON.parse((await cli('list', vdiUuid, '--json')).stdout) as {
      storage: { storedBytes: number; objects: number; logicalBytes: number };
    };
    const listed = await world.client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: `backups/lab/${vdiUuid}/` }),
    );
    expect(storage).toEqual({
      storedBytes: (listed.Contents ?? []).reduce((sum, object) => sum + (object.Size ?? 0), 0),
      objects: 4,
      logicalBytes: 16 * MiB,
    });
    expect(listed.KeyCount).toBe(4);

    const { code, stdout } = await cli('list', vdiUuid);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^RESTORE POINT\s+KIND\s+TAKEN\s+SIZE\s+BLOCKS\s+RESTORE READS\s+CHAIN$/m);
    expect(stdout).toContain(`${full.backupId as string} + 1 delta`);
    expect(stdout).toMatch(/^stored: .+ in 4 object\(s\) for a 16\.0 MiB disk$/m);
  });

  it.each(['replay', 'merge'] as const)(
    'restore --strategy %s: the new VDI equals the source snapshot',
    async (strategy) => {
      const latest = (await manifestsOf()).at(-1)!;
      const { code, stdout, stderr } = await cli(
        'restore',
        vdiUuid,
        '--sr-uuid',
        sim.srs.shared.uuid,
        '--strategy',
        strategy,
        '--restore-point',
        'latest',
        '--json',
      );
      expect(code, stderr).toBe(0);
      const document = JSON.parse(stdout) as {
        executionId: string;
        status: string;
        result: Record<string, unknown>;
      };
      expect(document.executionId).toMatch(/^restore-/);
      expect(document.status).toBe('SUCCEEDED');
      expect(document.result).toMatchObject({
        sourceVdiUuid: vdiUuid,
        restorePoint: latest.backupId,
        strategy,
        layersApplied: latest.chain,
        bytesMoved: expect.any(Number),
      });
      expect(sim.diskSha256(document.result.vdiUuid as string)).toBe(sim.diskSha256(latest.snapshotUuid));
    },
  );

  it('verify: every layer matches; an object altered in S3 exits 3 naming the layer and the problem', async () => {
    const ok = await cli('verify', vdiUuid, '--json');
    expect(ok.code, ok.stderr).toBe(0);
    const report = JSON.parse(ok.stdout) as {
      ok: boolean;
      restorePoint: string;
      layers: { ok: boolean; kind: string; vhd: unknown }[];
    };
    expect(report).toMatchObject({ ok: true, pool: 'lab', vdiUuid });
    expect(report.layers.map((layer) => [layer.kind, layer.ok])).toEqual([
      ['full', true],
      ['delta', true],
    ]);
    expect(report.layers[0]!.vhd).toMatchObject({ diskType: 'dynamic', virtualSize: 16 * MiB });

    // Flip one byte of the full's data, keeping its size: only the content check can see it.
    const [full] = await manifestsOf();
    const key = `backups/lab/${vdiUuid}/${full!.backupId}.vhd`;
    const object = await world.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const bytes = Buffer.from(await object.Body!.transformToByteArray());
    bytes[bytes.length - 4096]! ^= 0xff;
    await world.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));

    const bad = await cli('verify', vdiUuid);
    expect(bad.code).toBe(3);
    expect(bad.stdout).toMatch(new RegExp(`${full!.backupId}\\s+full.*sha256 differs from the manifest`));
    expect(bad.stdout).toContain('verification failed: 1 problem(s)');
    const badJson = JSON.parse((await cli('verify', vdiUuid, '--all', '--json')).stdout) as {
      ok: boolean;
      layers: { ok: boolean; problems: string[] }[];
    };
    expect(badJson.ok).toBe(false);
    expect(badJson.layers[0]!.problems).toEqual(['sha256 differs from the manifest']);
  });

  it("a qcow2 VDI: backup, list and verify name the format; a damaged L2 table fails verify with the parser's error", async () => {
    const qcow2Vdi = sim.addVdi({ virtualSize: 8 * MiB, populate: 'scattered', imageFormat: 'qcow2' }).uuid;
    const backedUp = await cli('backup', qcow2Vdi, '--json');
    expect(backedUp.code, backedUp.stderr).toBe(0);
    const listed = JSON.parse((await cli('list', qcow2Vdi, '--json')).stdout) as {
      restorePoints: { backupId: string; format?: string; kind: string }[];
    };
    expect(listed.restorePoints.map((p) => [p.kind, p.format])).toEqual([['full', 'qcow2']]);
    const table = await cli('list', qcow2Vdi);
    expect(table.stdout).toMatch(/\d+ qcow2 clusters/);

    const ok = await cli('verify', qcow2Vdi, '--json');
    expect(ok.code, ok.stderr).toBe(0);
    const report = JSON.parse(ok.stdout) as {
      layers: { format: string; vhd: unknown; qcow2: { presentClusters: number; virtualSize: number } }[];
    };
    expect(report.layers).toHaveLength(1);
    expect(report.layers[0]).toMatchObject({ format: 'qcow2', vhd: null, qcow2: { virtualSize: 8 * MiB } });
    expect(report.layers[0]!.qcow2.presentClusters).toBeGreaterThan(0);

    // The first L2 entry's offset (cluster 4 of the host's layout for a disk this small), size kept.
    const key = `backups/lab/${qcow2Vdi}/${listed.restorePoints[0]!.backupId}.qcow2`;
    const object = await world.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const bytes = Buffer.from(await object.Body!.transformToByteArray());
    bytes[4 * 65536 + 5]! ^= 0x10;
    await world.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
    const bad = await cli('verify', qcow2Vdi, '--json');
    expect(bad.code).toBe(3);
    const badReport = JSON.parse(bad.stdout) as { ok: boolean; layers: { problems: string[] }[] };
    expect(badReport.ok).toBe(false);
    expect(badReport.layers[0]!.problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/L2 entry of cluster \d+ points at byte \d+.*\(at byte 262144\)/),
      ]),
    );
  });

  it('backup --tag and --vm: whole VMs, a VM restore point each, in the JSON document; restore-vm brings one back as a new, halted VM', async () => {
    const disk = sim.addVdi({ virtualSize: 4 * MiB, populate: 'scattered', nameLabel: 'vm disk' }).uuid;
    const vm = sim.addVm({
      nameLabel: 'cli-vm',
      tags: ['cli-nightly'],
      disks: [{ vdiUuid: disk, userdevice: '0', bootable: true }],
      vifs: [{ networkUuid: sim.managementNetwork.uuid, device: '0' }],
    }).uuid;
    const byTag = await cli('backup', '--tag', 'cli-nightly', '--json');
    expect(byTag.code, byTag.stderr).toBe(0);
    const document = JSON.parse(byTag.stdout) as {
      result: { outcomes: { vdiUuid: string; vmUuid: string; kind: string }[]; vmOutcomes: unknown[] };
    };
    expect(document.result.outcomes.map((o) => [o.vdiUuid, o.vmUuid, o.kind])).toEqual([[disk, vm, 'full']]);
    expect(document.result.vmOutcomes).toEqual([
      { vmUuid: vm, status: 'succeeded', vmBackupId: expect.stringMatching(/-vm$/), disks: 1 },
    ]);
    const byUuid = await cli('backup', '--vm', vm);
    expect(byUuid.code, byUuid.stderr).toBe(0);
    const listed = JSON.parse((await cli('list', '--vm', vm, '--json')).stdout) as {
      vmRestorePoints: {
        vmBackupId: string;
        nameLabel: string;
        disks: { vdiUuid: string; restorable: boolean }[];
      }[];
    };
    expect(
      listed.vmRestorePoints.map((p) => [p.nameLabel, p.disks.map((d) => [d.vdiUuid, d.restorable])]),
    ).toEqual([
      ['cli-vm', [[disk, true]]],
      ['cli-vm', [[disk, true]]],
    ]);
    const table = await cli('list', '--vm', vm);
    expect(table.stdout).toMatch(/^VM RESTORE POINT\s+TAKEN\s+VM\s+DISKS\s+VIFS\s+STATE$/m);
    expect(table.stdout).toMatch(/cli-vm\s+0:\S+-delta\s+1\s+restorable/);
    const none = await cli('backup', '--tag', 'nobody-has-this');
    expect(none.code).toBe(1);
    expect(none.stderr + none.stdout).toMatch(/NothingToBackUp|no VM of pool lab carries "nobody-has-this"/);
    const usage = await cli('backup', '--vm', 'not-a-uuid');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/vmUuids\[0\]: "not-a-uuid" is not a VM uuid/);

    // restore-vm: the latest VM point into a new, halted VM, its disk in slot 0 holding the point.
    const restored = await cli(
      'restore-vm',
      vm,
      '--sr-uuid',
      sim.srs.shared.uuid,
      '--name-label',
      'cli-vm copy',
    );
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stdout).toMatch(
      /restored \S+-vm of VM \S+ into new VM \S+ "cli-vm copy" \(halted; we never start it\)/,
    );
    const again = await cli('restore-vm', vm, '--sr-uuid', sim.srs.shared.uuid, '--json');
    expect(again.code, again.stderr).toBe(0);
    const result = (JSON.parse(again.stdout) as { result: { vmUuid: string; disks: { vdiUuid: string }[] } })
      .result;
    expect(sim.vmRecord(result.vmUuid)).toMatchObject({ name_label: 'cli-vm', power_state: 'Halted' });
    const [slot0] = sim.vbdsOf(result.vmUuid).filter((vbd) => vbd.type === 'Disk');
    expect(slot0!.VDI).toBe(sim.vdiRecord(result.disks[0]!.vdiUuid)!.ref);
    const latest = sim.snapshotsOf(disk).at(-1)!;
    expect(sim.diskSha256(result.disks[0]!.vdiUuid)).toBe(sim.diskSha256(latest.uuid));
    const badMap = await cli('restore-vm', vm, '--sr-map', 'zero');
    expect(badMap.code).toBe(2);
    expect(badMap.stderr).toMatch(/--sr-map takes <from>=<to>, got "zero"/);
  });

  it('backup that fails: exit 1 with the cause; the execution is recorded as failed', async () => {
    sim.injectFault({ kind: 'rpc-error', method: 'VDI.snapshot', code: 'SR_FULL', times: 1 });
    const { code, stdout, stderr } = await cli('backup', vdiUuid);
    expect(code).toBe(1);
    executions.failed = /execution (\S+)/.exec(stderr)?.[1];
    expect(stderr).toMatch(/✗ Snapshot failed: .*SR_FULL/);
    expect(stdout).toMatch(/^execution failed: /m);
    expect(stdout).toContain('SR_FULL');
    const json = await cli('backup', vdiUuid, '--mode', 'full', '--json');
    expect(json.code).toBe(0);
  });

  it('watch --local: a finished execution replays its steps and summary, exit 0', async () => {
    const { code, stdout, stderr } = await cli('watch', executions.finished!);
    expect(code, stderr).toBe(0);
    expect(stderr).toContain(`backup execution ${executions.finished}`);
    expect(stderr).toContain('→ Export');
    expect(stdout).toContain('full because first backup');

    const json = await cli('watch', executions.finished!, '--json');
    const document = JSON.parse(json.stdout) as {
      status: string;
      kind: string;
      events: { type: string; state?: string }[];
      result: unknown;
    };
    expect(document).toMatchObject({
      executionId: executions.finished,
      kind: 'backup',
      status: 'SUCCEEDED',
      input: { vdiUuids: [vdiUuid] },
    });
    expect(document.events.filter((e) => e.type === 'StateEntered').map((e) => e.state)).toContain('Commit');
    expect(document.result).toMatchObject({ outcomes: [{ kind: 'full' }] });
  });

  it('watch --local: a failed execution shows the failing step and the cause, exit 1', async () => {
    const { code, stdout, stderr } = await cli('watch', executions.failed!);
    expect(code).toBe(1);
    expect(stderr).toMatch(/✗ Snapshot failed: .*SR_FULL/);
    expect(stdout).toContain('SR_FULL');
    const document = JSON.parse((await cli('watch', executions.failed!, '--json')).stdout) as Record<
      string,
      unknown
    >;
    expect(document).toMatchObject({
      status: 'FAILED',
      error: expect.any(String),
      cause: expect.stringContaining('SR_FULL'),
    });
  });

  it('watch --local follows an execution another process is running until it ends', async () => {
    const fault = sim.injectFault({ kind: 'throttle', on: 'export', bytesPerSecond: 2 * MiB, times: 1 });
    const backup = startCli(['backup', vdiUuid, '--mode', 'full', ...local], env);
    let executionId: string | undefined;
    while (!executionId) {
      executionId = /execution (\S+)/.exec(backup.stderr())?.[1];
      await sleep(50);
    }
    const watched = await cli('watch', executionId, '--json');
    const ran = await backup.result;
    fault.remove();
    expect(ran.code, ran.stderr).toBe(0);
    expect(watched.code).toBe(0);
    const document = JSON.parse(watched.stdout) as {
      status: string;
      events: { type: string; transfer?: string }[];
    };
    expect(document.status).toBe('SUCCEEDED');
    expect(document.events.some((e) => e.type === 'Progress' && e.transfer === `export ${vdiUuid}`)).toBe(
      true,
    );
    const log = await readFile(join(stateDir, `${executionId}.jsonl`), 'utf8');
    expect(log.trim().split('\n').at(-1)).toContain('"type":"ExecutionResult"');
  });
});

describe('vdi-vault usage errors (exit 2, naming what is wrong)', () => {
  const uuid = '3f1c2d4e-8a9b-4c5d-9e0f-112233445566';

  it('--help lists every command; a bare call shows it and exits 2', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    for (const command of ['backup', 'restore', 'list', 'watch', 'verify'])
      expect(help.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    expect((await runCli([])).code).toBe(2);
    const commandHelp = await runCli(['restore', '--help']);
    expect(commandHelp.code).toBe(0);
    expect(commandHelp.stdout).toContain('--sr-uuid <uuid>');
  });

  it.each([
    [['backup', uuid, '--frob'], 'unknown flag --frob for `vdi-vault backup`'],
    [['list', uuid, '--bucket'], 'missing value for --bucket'],
    [['verify', uuid, '--bucket', '--local'], 'missing value for --bucket'],
    [['backup', uuid, '--json=yes'], '--json takes no value'],
    [['frobnicate'], 'unknown command "frobnicate"'],
    [['backup', 'not-a-uuid', '--local'], 'vdiUuids[0]: "not-a-uuid" is not a VDI uuid'],
    [['backup', uuid, '--mode', 'sometimes', '--local'], 'mode: "sometimes" is not a mode'],
    [['backup', '--local'], 'backup needs a VDI uuid, --vm <vm-uuid> or --tag <tag>'],
    [['restore', uuid, '--sr-uuid', 'nope', '--local'], 'srUuid: "nope" is not a uuid'],
    [['restore', uuid, '--local'], 'srUuid: is missing'],
    [
      ['restore', uuid, '--sr-uuid', uuid, '--restore-point', 'yesterday', '--local'],
      'restorePoint: "yesterday"',
    ],
    [['list', 'xyz'], 'vdiUuid: "xyz" is not a uuid'],
    [['backup', uuid, '--local', '--bucket', 'b'], '--local needs --xapi-url'],
    [['backup', uuid, '--local', '--no-wait'], '--no-wait: only for a deployed stack, not with --local'],
    [['watch', 'backup-1'], 'is not an execution ARN'],
    [['watch', '../etc/passwd', '--local'], 'is not a local execution id'],
  ])('%j → %s', async (args, message) => {
    const { code, stderr, stdout } = await runCli(args);
    expect(code).toBe(2);
    expect(stderr).toContain(message);
    expect(stdout).toBe('');
  });

  it('--json turns a usage error into a JSON document too', async () => {
    const { code, stdout } = await runCli(['backup', 'nope', '--local', '--json']);
    expect(code).toBe(2);
    expect(JSON.parse(stdout)).toEqual({
      error: 'UsageError',
      message: expect.stringContaining('vdiUuids[0]'),
    });
  });

  it('watch --local of an unknown execution exits 4', async () => {
    const { code, stderr } = await runCli([
      'watch',
      '--local',
      'backup-20260101T000000000Z-000000',
      '--state-dir',
      tmpdir(),
    ]);
    expect(code).toBe(4);
    expect(stderr).toContain('no execution log');
  });
});
