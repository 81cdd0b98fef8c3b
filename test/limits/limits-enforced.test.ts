/**
 * The limits themselves fail loudly, through the stack as deployed: an execution input over Step Functions'
 * 256 KiB fails with `States.DataLimitExceeded`, a Fargate task's overrides over ECS's 8,192 characters with
 * `ECS.InvalidParameterException`; and what could grow with a VDI's metadata (its name label) does not.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deployLocally,
  ECS_OVERRIDES_LIMIT,
  localConfig,
  STATE_PAYLOAD_LIMIT,
} from '../../world/local/local-deployment.ts';
import { synthesizeApp } from '../../world/local/synthesized-workflows.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { describeSizes, installPayloadProbe, type PayloadProbe } from './payload-probe.ts';

const MiB = 1024 * 1024;

describe('the service limits fail loudly', () => {
  let world: BackupWorld;
  let probe: PayloadProbe;

  beforeAll(async () => {
    probe = installPayloadProbe();
    // Every export goes to Fargate, so a backup's plan reaches the task's overrides.
    world = await startBackupWorld({
      vdi: { virtualSize: 4 * MiB, populate: 'scattered', nameLabel: 'web-01 root' },
      target: { routing: { fargateThresholdBytes: 1 } },
    });
  });
  afterAll(async () => {
    probe?.remove();
    await world?.close();
  });

  /** Nothing of a failed backup of `vdiUuid` remains: no manifest, snapshot, task, session or upload. */
  async function expectNothingLeft(vdiUuid: string) {
    expect(await world.manifests(vdiUuid)).toEqual([]);
    expect(world.sim.snapshotsOf(vdiUuid)).toEqual([]);
    expect(world.sim.openTasks()).toEqual([]);
    expect(world.sim.openSessions()).toEqual([]);
    expect(await world.openUploads()).toEqual([]);
  }

  it('an execution input over 256 KiB is refused with States.DataLimitExceeded before any state runs', async () => {
    const input = { vdiUuids: Array.from({ length: 7000 }, () => randomUUID()) };
    expect(Buffer.byteLength(JSON.stringify(input))).toBeGreaterThan(STATE_PAYLOAD_LIMIT);
    const logins = world.sim.sessionCounts().logins;
    probe.reset();
    const outcome = await world.backup(input).then(
      (run) => ({ name: run.error, message: run.cause }),
      (error: Error) => ({ name: error.name, message: error.message }),
    );
    expect(outcome.name).toBe('States.DataLimitExceeded');
    expect(outcome.message).toMatch(/execution input: \d+ bytes/);
    expect(probe.sizes().statesEntered).toEqual([]);
    expect(world.sim.sessionCounts().logins).toBe(logins);
  });

  it('a name label of any length: the plan keeps 512 characters, so states and the task overrides stay small', async () => {
    const vdi = world.sim.addVdi({
      virtualSize: 2 * MiB,
      populate: 'generated',
      nameLabel: 'n'.repeat(300 * 1024),
    });
    probe.reset();
    const run = await world.backup({ vdiUuids: [vdi.uuid] });
    const sizes = probe.sizes();
    console.log(describeSizes('300 KiB name label', sizes));
    expect(run.status, `${run.error}: ${run.cause}`).toBe('SUCCEEDED');
    const [manifest] = await world.manifests(vdi.uuid);
    expect(manifest!.vdiNameLabel).toBe('n'.repeat(512));
    expect(Math.max(...(sizes.overridesByState.get('ExportOnFargate') ?? [0]))).toBeLessThan(4096);
  });

  it('overrides over 8,192 characters fail the Fargate export with ECS.InvalidParameterException, exactly past the limit', async () => {
    // Valid input cannot reach the limit (ids only, a capped label): pad the state's overrides in a copy
    // of the template with one more variable, to exactly the limit and one character past it.
    const padding = (chars: number) => `{"Name":"PADDING","Value":"${'p'.repeat(chars)}"},`;
    const padded = async (chars: number, vdiUuid: string) => {
      const app = structuredClone(synthesizeApp(localConfig(world.target)));
      const marker = '{"Name":"VDI_VAULT_TRANSFER_STEP","Value":"backup.export"},';
      const parts = (app.backup.definitionString as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1];
      const index = parts.findIndex(
        (part) => typeof part === 'string' && part.includes(marker.replaceAll('"', '\\"')),
      );
      const at =
        index >= 0 ? index : parts.findIndex((part) => typeof part === 'string' && part.includes(marker));
      expect(at).toBeGreaterThanOrEqual(0);
      parts[at] = (parts[at] as string).replace(marker, marker + padding(chars));
      const deployment = await deployLocally(world.target, { app });
      try {
        probe.reset();
        return { run: await deployment.runBackup({ vdiUuids: [vdiUuid] }), deployment, sizes: probe.sizes() };
      } finally {
        await deployment.close();
      }
    };

    // How much an empty padding variable adds (a first backup, like the two below); then fill up to exactly
    // the limit.
    const empty = await padded(0, world.sim.addVdi({ virtualSize: 4 * MiB, populate: 'scattered' }).uuid);
    expect(empty.run.status, `${empty.run.error}: ${empty.run.cause}`).toBe('SUCCEEDED');
    const [emptyChars] = empty.sizes.overridesByState.get('ExportOnFargate')!;
    const room = ECS_OVERRIDES_LIMIT - emptyChars!;
    console.log(`ExportOnFargate overrides: ${emptyChars} chars; ${room} chars of padding reach the limit`);

    // At the limit: the task runs and the backup commits.
    const atLimit = world.sim.addVdi({ virtualSize: 4 * MiB, populate: 'scattered' });
    const fits = await padded(room, atLimit.uuid);
    expect(fits.run.status, `${fits.run.error}: ${fits.run.cause}`).toBe('SUCCEEDED');
    expect(fits.sizes.overridesByState.get('ExportOnFargate')).toEqual([ECS_OVERRIDES_LIMIT]);

    // One character more: RunTask is refused (retried as a start failure, then caught), nothing runs.
    const over = world.sim.addVdi({ virtualSize: 4 * MiB, populate: 'scattered' });
    const refused = await padded(room + 1, over.uuid);
    expect(refused.run.status).toBe('FAILED');
    expect(refused.run.error).toBe('ECS.InvalidParameterException');
    expect(refused.run.cause).toMatch(
      new RegExp(`at most ${ECS_OVERRIDES_LIMIT}, not ${ECS_OVERRIDES_LIMIT + 1}`),
    );
    expect(refused.sizes.statesEntered).toContain('FailureCleanup');
    const calls = refused.deployment.gateway.calls;
    expect(calls.filter((call) => call.action === 'ecs:RunTask')).toEqual([]);
    expect(
      calls.filter((call) => call.action === 's3:PutObject' && call.resource.includes(over.uuid)),
    ).toEqual([]);
    await expectNothingLeft(over.uuid);
  });
});
