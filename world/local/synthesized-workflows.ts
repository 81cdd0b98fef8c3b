import { App } from 'aws-cdk-lib';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { bundleContainer } from '../../lambdas/container/bundle.ts';
import { buildApp } from '../../infra/app.ts';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A state machine as `cdk synth` emits it: its definition, and which function or task each state runs. */
export interface SynthesizedWorkflow {
  /** The state machine's logical id in the template. */
  readonly logicalId: string;
  /** The definition string as the template holds it (an `Fn::Join`), resolved by the local account. */
  readonly definitionString: Json;
}

export interface SynthesizedApp {
  /** The whole template: functions with their environment, roles, policies, the task definition. */
  readonly template: Record<string, Json> & { Resources: Record<string, Resource> };
  readonly backup: SynthesizedWorkflow;
  readonly restore: SynthesizedWorkflow;
  /** Where the bundles are, when synthesized with bundling (`cdk.out`). */
  readonly assemblyDir?: string;
}

const cached = new Map<string, SynthesizedApp>();

/**
 * Synthesizes the CDK app in-process with a configuration, bundling skipped (the template is the same;
 * `synthesizeBundledApp` makes the bundles). Nothing about the workflows is written twice: this is the
 * template `cdk synth` emits, cached across processes by the app's sources and the configuration.
 */
export function synthesizeApp(config: unknown): SynthesizedApp {
  const key = `${sourcesHash()}-${createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 16)}`;
  const hit = cached.get(key);
  if (hit) return hit;
  const cacheFile = join(tmpdir(), 'vdi-vault-synth-cache', `${key}.json`);
  try {
    const app = JSON.parse(readFileSync(cacheFile, 'utf8')) as SynthesizedApp;
    cached.set(key, app);
    return app;
  } catch {
    // not cached yet
  }
  const outdir = mkdtempSync(join(tmpdir(), 'vdi-vault-synth-'));
  try {
    const app = synthesizeInto(outdir, config, false);
    mkdirSync(dirname(cacheFile), { recursive: true });
    const partial = `${cacheFile}.${process.pid}`;
    writeFileSync(partial, JSON.stringify(app));
    renameSync(partial, cacheFile);
    cached.set(key, app);
    return app;
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/** Synthesizes with bundling into `outdir`, as `cdk synth` does: each function's asset holds its bundle. */
export function synthesizeBundledApp(outdir: string, config: unknown): SynthesizedApp {
  return { ...synthesizeInto(outdir, config, true), assemblyDir: outdir };
}

function synthesizeInto(outdir: string, config: unknown, bundle: boolean): SynthesizedApp {
  const { app, stack } = buildApp(
    new App({
      outdir,
      context: {
        config,
        ...(bundle ? { 'aws:cdk:enable-asset-metadata': true } : { 'aws:cdk:bundling-stacks': [] }),
      },
    }),
    { nagChecks: false },
  );
  const template = app.synth().getStackByName(stack.stackName).template as SynthesizedApp['template'];
  return {
    template,
    backup: workflowFrom(template.Resources, 'BackupStateMachine'),
    restore: workflowFrom(template.Resources, 'RestoreStateMachine'),
  };
}

interface Resource {
  Type: string;
  Properties?: Record<string, Json>;
  Metadata?: Record<string, Json>;
}

function workflowFrom(resources: Record<string, Resource>, logicalIdPrefix: string): SynthesizedWorkflow {
  const entry = Object.entries(resources).find(
    ([id, resource]) =>
      resource.Type === 'AWS::StepFunctions::StateMachine' && id.startsWith(logicalIdPrefix),
  );
  if (!entry) throw new Error(`no state machine ${logicalIdPrefix}* in the synthesized template`);
  const definitionString = entry[1].Properties?.DefinitionString;
  if (definitionString === undefined) throw new Error(`${entry[0]} has no DefinitionString`);
  return { logicalId: entry[0], definitionString };
}

/** Calls `visit` for every state, Map and Parallel branches included. */
export function visitStates(
  machine: Record<string, Json>,
  visit: (name: string, state: Record<string, Json>) => void,
): void {
  const states = machine.States as Record<string, Record<string, Json>>;
  for (const [name, state] of Object.entries(states)) {
    visit(name, state);
    const processor = (state.ItemProcessor ?? state.Iterator) as Record<string, Json> | undefined;
    if (processor) visitStates(processor, visit);
    for (const branch of (state.Branches ?? []) as Record<string, Json>[]) visitStates(branch, visit);
  }
}

/** Hash of every file under infra/ and lambdas/ (the step table, the handlers) and of the lock file. */
function sourcesHash(): string {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const hash = createHash('sha256');
  const visit = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else {
        hash.update(path.slice(root.length));
        hash.update(readFileSync(path));
      }
    }
  };
  visit(join(root, 'infra'));
  visit(join(root, 'lambdas'));
  hash.update(readFileSync(join(root, 'package-lock.json')));
  return hash.digest('hex').slice(0, 32);
}

/** The code the deployed stack runs, once per version of the sources: each workflow's bundle and the task's. */
export interface BundledCode {
  /** `<dir>/index.mjs` of each workflow's Lambda bundle, exactly as `cdk synth` staged it. */
  readonly lambda: Readonly<Record<string, string>>;
  /** The transfer container's bundle, as its Dockerfile builds it. */
  readonly container: string;
}

/**
 * Builds (or finds in the cache) the bundles `cdk synth` makes for the Lambdas, and the container's, so that
 * local runs execute the bundled code the way Lambda and Fargate do.
 */
export async function bundledCode(): Promise<BundledCode> {
  const dir = join(tmpdir(), 'vdi-vault-bundles', sourcesHash());
  const manifest = join(dir, 'bundles.json');
  try {
    return JSON.parse(readFileSync(manifest, 'utf8')) as BundledCode;
  } catch {
    // not built yet
  }
  mkdirSync(dirname(dir), { recursive: true });
  const building = mkdtempSync(`${dir}.building-`);
  const outdir = join(building, 'cdk.out');
  const app = synthesizeBundledApp(outdir, {
    pools: [{ name: 'bundle', url: 'https://pool.invalid', secret: 'vdi-vault/bundle' }],
  });
  const lambda: Record<string, string> = {};
  for (const resource of Object.values(app.template.Resources)) {
    const step = (resource.Properties?.Environment as { Variables?: Record<string, Json> } | undefined)
      ?.Variables?.VDI_VAULT_STEP;
    const asset = resource.Metadata?.['aws:asset:path'];
    if (resource.Type !== 'AWS::Lambda::Function' || typeof step !== 'string' || typeof asset !== 'string')
      continue;
    const workflow = step.split('.')[0]!;
    const target = join(building, workflow);
    if (!lambda[workflow]) cpSync(join(outdir, asset), target, { recursive: true });
    lambda[workflow] = join(dir, workflow);
  }
  await bundleContainer(join(building, 'container', 'transfer.mjs'));
  rmSync(outdir, { recursive: true, force: true });
  const code: BundledCode = { lambda, container: join(dir, 'container', 'transfer.mjs') };
  writeFileSync(join(building, 'bundles.json'), JSON.stringify(code));
  try {
    renameSync(building, dir);
  } catch {
    // another process built it first: use theirs
    rmSync(building, { recursive: true, force: true });
  }
  return JSON.parse(readFileSync(manifest, 'utf8')) as BundledCode;
}
