/**
 * A 1,000-layer chain (1 full + 999 deltas of a 16 MiB disk, fabricated in Swift as backups would have
 * left it) restored on Fargate with each strategy, through the stack as deployed: every state and task
 * payload stays within Step Functions' 256 KiB, the task's overrides within ECS's 8,192 characters (the
 * deployment fails a run that passes either), the restored disk is bit-exact, and nothing is left behind.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ECS_OVERRIDES_LIMIT, STATE_PAYLOAD_LIMIT } from '../../world/local/local-deployment.ts';
import type { AwsCall } from '../../world/local/aws/gateway.ts';
import { STEP_ENV } from '../../infra/constructs/step-function.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { listKeys } from '../world/s3.ts';
import {
  blockContent,
  deleteKeys,
  expectedDiskSha256,
  fabricateSeries,
  type LayerSpec,
} from './catalog-fixtures.ts';
import { describeSizes, installPayloadProbe, type PayloadProbe } from './payload-probe.ts';

const MiB = 1024 * 1024;
const LAYERS = 1000;
const VIRTUAL_SIZE = 16 * MiB; // 8 blocks of 2 MiB
const BLOCKS = VIRTUAL_SIZE / (2 * MiB);

/**
 * The full carries 4 blocks; most deltas carry none (a quiet day's export: header, BAT, footer); every
 * 100th carries one or two; one carries a block that became zeros; the newest changes block 1.
 */
function chainLayers(): LayerSpec[] {
  const layers: LayerSpec[] = [
    { kind: 'full', blocks: new Map([0, 2, 5, 7].map((index) => [index, blockContent(`full ${index}`)])) },
  ];
  for (let i = 1; i < LAYERS; i++) {
    const blocks = new Map<number, Buffer>();
    if (i % 100 === 37) {
      for (const index of new Set([i % BLOCKS, (i * 3 + 1) % BLOCKS])) {
        blocks.set(index, blockContent(`delta ${i} ${index}`));
      }
    }
    if (i === 500) blocks.set(2, Buffer.alloc(2 * MiB)); // a block that became zeros travels as zeros
    if (i === LAYERS - 1) blocks.set(1, blockContent(`newest ${i}`));
    layers.push({ kind: 'delta', blocks: new Map([...blocks].sort(([a], [b]) => a - b)) });
  }
  return layers;
}

describe('a 1,000-layer chain restored on Fargate', () => {
  let world: BackupWorld;
  let probe: PayloadProbe;
  const sourceVdiUuid = randomUUID();
  const layers = chainLayers();
  const expectedSha256 = expectedDiskSha256(VIRTUAL_SIZE, layers);
  let objectKeys: Set<string>;

  beforeAll(async () => {
    probe = installPayloadProbe();
    // Every transfer at or above 1 byte goes to Fargate: both strategies run in one task.
    world = await startBackupWorld({
      vdi: { virtualSize: 2 * MiB },
      target: { routing: { fargateThresholdBytes: 1 } },
    });
    const started = Date.now();
    const manifests = await fabricateSeries(world.s3, {
      catalog: { bucket: world.bucket, prefix: world.target.prefix! },
      pool: world.target.pool!,
      vdiUuid: sourceVdiUuid,
      vdiNameLabel: 'db-01 data',
      virtualSize: VIRTUAL_SIZE,
      layers,
      firstAt: new Date('2024-01-01T00:00:00Z'),
    });
    objectKeys = new Set(manifests.map((manifest) => manifest.objectKey));
    expect(manifests).toHaveLength(LAYERS);
    expect(manifests.filter((m) => m.presentBlocks === 0).length).toBeGreaterThanOrEqual(LAYERS - 20);
    console.log(`fabricated ${LAYERS} restore points in ${Date.now() - started} ms`);
  }, 300_000);

  afterAll(async () => {
    probe?.remove();
    if (world) await deleteKeys(world.s3, world.bucket);
    await world?.close();
  }, 300_000);

  it.each(['replay', 'merge'] as const)(
    'restores all 1,000 layers bit-exact with strategy %s in one Fargate task, every payload within the limits, nothing left',
    async (strategy) => {
      const deployment = await world.deployment();
      const callsBefore = deployment.gateway.calls.length;
      probe.reset();
      const loginsBefore = world.sim.sessionCounts().logins;
      const started = Date.now();
      const run = await world.restore({
        vdiUuid: sourceVdiUuid,
        srUuid: world.sim.srs.shared.uuid,
        strategy,
      });
      const elapsed = Date.now() - started;
      const sizes = probe.sizes();
      // ResolveChain, a 2-minute Lambda, reads each manifest (16 in flight) and takes every object's size
      // from the series' listing (one request per 1,000 keys), not a HEAD each.
      const resolveRole = await roleOfStep(world, 'restore.resolveChain');
      const resolveCalls = deployment.gateway.calls
        .slice(callsBefore)
        .filter((call) => call.principal === resolveRole && call.service === 's3');
      const resolveMs = sizes.durations.get('ResolveChain')?.[0];
      console.log(
        `ResolveChain: ${resolveCalls.length} S3 requests in ${resolveMs ?? '(did not finish)'} ms` +
          (resolveMs ? ` (${(resolveMs / resolveCalls.length).toFixed(1)} ms each)` : '') +
          `; states: ${sizes.statesEntered.join(' → ')}; ${[...sizes.taskErrors].map(([s, e]) => `${s}: ${e.map((x) => x.name).join(', ')}`).join('; ')}`,
      );
      expect(run.status, `${run.error}: ${run.cause}`).toBe('SUCCEEDED');
      // Counted at the gateway: a GET per manifest, the listing's pages (2,000 keys: 2) and the chain document.
      expect(resolveCalls.length).toBeLessThanOrEqual(LAYERS + 4);
      console.log(describeSizes(`1,000-layer ${strategy} (${elapsed} ms)`, sizes));
      console.log(`pool logins during the restore: ${world.sim.sessionCounts().logins - loginsBefore}`);

      // One Fargate task did every layer: no Lambda import, no Map over the layers.
      const onFargate = strategy === 'replay' ? 'ReplayOnFargate' : 'ImportMergedOnFargate';
      expect(sizes.statesEntered).toContain(onFargate);
      for (const onLambda of ['ReplayLayers', 'ImportLayer', 'ImportLayerOnFargate', 'ImportMerged']) {
        expect(sizes.statesEntered).not.toContain(onLambda);
      }
      const calls: AwsCall[] = deployment.gateway.calls.slice(callsBefore);
      expect(calls.filter((call) => call.action === 'ecs:RunTask')).toHaveLength(1);
      expect(deployment.gateway.denied()).toEqual([]);
      // Counted at S3: every one of the 1,000 objects was read (whole for a replay, ranges for a merge).
      const read = new Set(
        calls
          .filter((call) => call.action === 's3:GetObject' && call.allowed)
          .map((call) => call.resource.split(':::')[1]!.split('/').slice(1).join('/'))
          .filter((key) => objectKeys.has(key)),
      );
      expect(read.size).toBe(LAYERS);

      expect(run.result!.layersApplied).toHaveLength(LAYERS);
      expect(run.result!.strategy).toBe(strategy);
      expect(world.sim.diskSha256(run.result!.vdiUuid)).toBe(expectedSha256);

      // The deployment fails a run past either limit; these say how far below them this one stayed.
      expect(sizes.state.bytes).toBeGreaterThan(0);
      expect(sizes.state.bytes).toBeLessThanOrEqual(STATE_PAYLOAD_LIMIT);
      expect(sizes.task.bytes).toBeLessThanOrEqual(STATE_PAYLOAD_LIMIT);
      expect(sizes.executionOutput).toBeLessThanOrEqual(STATE_PAYLOAD_LIMIT);
      expect(sizes.overridesByState.get(onFargate)).toHaveLength(1);
      expect(sizes.ecsOverrides.bytes).toBeLessThanOrEqual(ECS_OVERRIDES_LIMIT);

      // Nothing left: no chain document or transfer result, no upload, no task or session on the pool.
      expect(await listKeys(world.s3, world.bucket, `${world.target.prefix}/.transfers/`)).toEqual([]);
      expect(await world.openUploads()).toEqual([]);
      expect(world.sim.openTasks()).toEqual([]);
      expect(world.sim.openSessions()).toEqual([]);
      const restored = world.sim.vdiRecord(run.result!.vdiUuid)!;
      expect((restored.other_config as Record<string, string>)['vdi-vault-restore']).toBe('complete');
      world.sim.deleteVdi(run.result!.vdiUuid);
    },
    300_000,
  );
});

/** The role of the function that runs `step` (e.g. `restore.resolveChain`), from the deployed template. */
async function roleOfStep(world: BackupWorld, step: string): Promise<string> {
  const { stack } = await world.deployment();
  for (const [, resource] of stack.resourcesOfType('AWS::Lambda::Function')) {
    const env = (resource.Properties?.Environment as { Variables?: Record<string, unknown> } | undefined)
      ?.Variables;
    if (env?.[STEP_ENV] === step) return stack.resolve(resource.Properties?.Role) as string;
  }
  throw new Error(`no ${step} function in the template`);
}
