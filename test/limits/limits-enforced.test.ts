/**
 * The limits themselves fail loudly, through the stack as deployed: an execution input or a state over
 * Step Functions' 256 KiB fails with `States.DataLimitExceeded`, a Fargate task's overrides over ECS's
 * 8,192 characters with `ECS.InvalidParameterException`, each reached with input the product accepts.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ECS_OVERRIDES_LIMIT, STATE_PAYLOAD_LIMIT } from '../../infra/local/local-deployment.ts';
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

  it('a state over 256 KiB fails the run with States.DataLimitExceeded (a 300 KiB name label in the plan)', async () => {
    const vdi = world.sim.addVdi({
      virtualSize: 2 * MiB,
      populate: 'generated',
      nameLabel: 'n'.repeat(300 * 1024),
    });
    probe.reset();
    const run = await world.backup({ vdiUuids: [vdi.uuid] });
    const sizes = probe.sizes();
    console.log(describeSizes('oversized plan', sizes), run.error);
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('States.DataLimitExceeded');
    // Plan's result was refused where Step Functions refuses it: the task's output.
    const [refusal] = sizes.taskErrors.get('Plan')!;
    expect(refusal!.name).toBe('States.DataLimitExceeded');
    const bytes = Number(/Plan output: (\d+) bytes/.exec(refusal!.message)?.[1]);
    console.log(`Plan output refused at ${bytes} bytes`);
    expect(bytes).toBeGreaterThan(STATE_PAYLOAD_LIMIT);
    expect(run.cause).toContain(`Plan output: ${bytes} bytes`);
    // The plan never reached a later state: nothing was snapshotted or exported.
    expect(sizes.statesEntered).not.toContain('Snapshot');
    expect(sizes.statesEntered).not.toContain('ExportOnFargate');
    expect(await world.manifests(vdi.uuid)).toEqual([]);
    expect(world.sim.snapshotsOf(vdi.uuid)).toEqual([]);
  });

  it('States.DataLimitExceeded is terminal, as in Step Functions: no Catch (States.ALL) runs after it', async () => {
    // Step Functions: "States.ALL ... can't catch the States.DataLimitExceeded terminal error"
    // (Developer Guide, Error handling). The execution fails at the state that passed the limit.
    const vdi = world.sim.addVdi({
      virtualSize: 2 * MiB,
      populate: 'generated',
      nameLabel: 'm'.repeat(300 * 1024),
    });
    probe.reset();
    const run = await world.backup({ vdiUuids: [vdi.uuid] });
    expect(run.error).toBe('States.DataLimitExceeded');
    const entered = probe.sizes().statesEntered;
    expect(entered.slice(entered.indexOf('Plan') + 1)).toEqual([]);
  });

  it('overrides over 8,192 characters fail the Fargate export with ECS.InvalidParameterException, exactly past the limit', async () => {
    // A VDI with a short name goes to Fargate: how much of the overrides is not its name label.
    const short = 'web-01 root';
    probe.reset();
    const baseline = await world.backup({ vdiUuids: [world.vdiUuid] });
    expect(baseline.status, `${baseline.error}: ${baseline.cause}`).toBe('SUCCEEDED');
    const [baselineChars] = probe.sizes().overridesByState.get('ExportOnFargate')!;
    console.log(describeSizes('Fargate export (short name)', probe.sizes()));
    const fixed = baselineChars! - short.length;
    const longestLabel = ECS_OVERRIDES_LIMIT - fixed;
    console.log(
      `ExportOnFargate overrides: ${baselineChars} chars with an ${short.length}-char name label; ` +
        `a name label of ${longestLabel} chars reaches the ${ECS_OVERRIDES_LIMIT} limit`,
    );

    // At the limit: the task runs and the backup commits.
    const atLimit = world.sim.addVdi({
      virtualSize: 4 * MiB,
      populate: 'scattered',
      nameLabel: 'a'.repeat(longestLabel),
    });
    probe.reset();
    const fits = await world.backup({ vdiUuids: [atLimit.uuid] });
    expect(fits.status, `${fits.error}: ${fits.cause}`).toBe('SUCCEEDED');
    expect(probe.sizes().overridesByState.get('ExportOnFargate')).toEqual([ECS_OVERRIDES_LIMIT]);

    // One character more: RunTask is refused (retried as a start failure, then caught), nothing runs.
    const over = world.sim.addVdi({
      virtualSize: 4 * MiB,
      populate: 'scattered',
      nameLabel: 'b'.repeat(longestLabel + 1),
    });
    const deployment = await world.deployment();
    const callsBefore = deployment.gateway.calls.length;
    probe.reset();
    const refused = await world.backup({ vdiUuids: [over.uuid] });
    const sizes = probe.sizes();
    expect(refused.status).toBe('FAILED');
    expect(refused.error).toBe('ECS.InvalidParameterException');
    expect(refused.cause).toMatch(
      new RegExp(`at most ${ECS_OVERRIDES_LIMIT}, not ${ECS_OVERRIDES_LIMIT + 1}`),
    );
    expect(sizes.ecsOverrides.bytes).toBe(ECS_OVERRIDES_LIMIT + 1);
    expect(sizes.statesEntered).toContain('FailureCleanup');
    const calls = deployment.gateway.calls.slice(callsBefore);
    expect(calls.filter((call) => call.action === 'ecs:RunTask')).toEqual([]);
    expect(
      calls.filter((call) => call.action === 's3:PutObject' && call.resource.includes(over.uuid)),
    ).toEqual([]);
    await expectNothingLeft(over.uuid);
  });
});
