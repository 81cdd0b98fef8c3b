import { App } from 'aws-cdk-lib';
import {
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
import { buildApp } from '../app.ts';
import { STEP_ENV } from '../constructs/step-function.ts';

/** The pseudo step of task states that run the transfer container. */
export const CONTAINER_STEP = 'container';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A state machine as `cdk synth` emits it, made runnable: placeholder ARNs, and which step each task runs. */
export interface SynthesizedWorkflow {
  readonly definition: Record<string, Json>;
  /** Task state name → domain step (`backup.login`), read from the invoked function's environment. */
  readonly stepsByState: Readonly<Record<string, string>>;
}

export interface SynthesizedWorkflows {
  readonly backup: SynthesizedWorkflow;
  readonly restore: SynthesizedWorkflow;
}

let cached: SynthesizedWorkflows | undefined;

/**
 * Synthesizes the CDK app in-process (bundling skipped: only the template matters here) and extracts the
 * state machines. Nothing about the workflows is written twice: this is the template `cdk synth` emits.
 */
export function synthesizeWorkflows(): SynthesizedWorkflows {
  if (cached) return cached;
  // The template is a pure function of the app's sources and the CDK version: reuse it across processes.
  const cacheFile = join(tmpdir(), 'vdi-vault-synth-cache', `${sourcesHash()}.json`);
  try {
    cached = JSON.parse(readFileSync(cacheFile, 'utf8')) as SynthesizedWorkflows;
    return cached;
  } catch {
    // not cached yet
  }
  cached = synthesizeNow();
  mkdirSync(dirname(cacheFile), { recursive: true });
  const partial = `${cacheFile}.${process.pid}`;
  writeFileSync(partial, JSON.stringify(cached));
  renameSync(partial, cacheFile);
  return cached;
}

function synthesizeNow(): SynthesizedWorkflows {
  const outdir = mkdtempSync(join(tmpdir(), 'vdi-vault-synth-'));
  try {
    const { app, stack } = buildApp(new App({ outdir, context: { 'aws:cdk:bundling-stacks': [] } }), {
      nagChecks: false,
    });
    const template = app.synth().getStackByName(stack.stackName).template as {
      Resources: Record<string, Resource>;
    };
    return {
      backup: workflowFrom(template.Resources, 'BackupStateMachine'),
      restore: workflowFrom(template.Resources, 'RestoreStateMachine'),
    };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

interface Resource {
  Type: string;
  Properties?: { DefinitionString?: Json; Environment?: { Variables?: Record<string, Json> } };
}

function workflowFrom(resources: Record<string, Resource>, logicalIdPrefix: string): SynthesizedWorkflow {
  const entry = Object.entries(resources).find(
    ([id, resource]) =>
      resource.Type === 'AWS::StepFunctions::StateMachine' && id.startsWith(logicalIdPrefix),
  );
  if (!entry) throw new Error(`no state machine ${logicalIdPrefix}* in the synthesized template`);
  const text = resolveJoin(entry[1].Properties?.DefinitionString);
  const definition = JSON.parse(text) as Record<string, Json>;
  const stepsByState: Record<string, string> = {};
  visitStates(definition, (name, state) => {
    if (state.Type !== 'Task' || typeof state.Resource !== 'string') return;
    // An ECS Fargate task runs the container entrypoint; locally, a child process (see run-container.ts).
    if (state.Resource.startsWith('arn:aws:states:::ecs:runTask')) {
      stepsByState[name] = CONTAINER_STEP;
      return;
    }
    const logicalId = /^arn:aws:lambda:us-east-1:123456789012:function:(.+)$/.exec(state.Resource)?.[1];
    const step = logicalId ? resources[logicalId]?.Properties?.Environment?.Variables?.[STEP_ENV] : undefined;
    if (typeof step !== 'string') throw new Error(`task state ${name} invokes no vdi-vault step function`);
    stepsByState[name] = step;
  });
  return { definition, stepsByState };
}

/** Resolves the `Fn::Join` CDK emits, turning each function's `Fn::GetAtt Arn` into a placeholder ARN. */
function resolveJoin(value: Json | undefined): string {
  if (typeof value === 'string') return value;
  const join = (value as { 'Fn::Join'?: [string, Json[]] } | undefined)?.['Fn::Join'];
  if (!join) throw new Error('unexpected DefinitionString shape');
  return join[1]
    .map((part) => {
      if (typeof part === 'string') return part;
      const getAtt = (part as { 'Fn::GetAtt'?: [string, string] })['Fn::GetAtt'];
      if (getAtt && getAtt[1] === 'Arn') return `arn:aws:lambda:us-east-1:123456789012:function:${getAtt[0]}`;
      if (getAtt) return `local-${getAtt[0]}-${getAtt[1]}`;
      const ref = (part as { Ref?: string }).Ref;
      if (ref === 'AWS::Partition') return 'aws';
      if (ref === 'AWS::Region') return 'us-east-1';
      if (ref === 'AWS::AccountId') return '123456789012';
      if (ref) return `local-${ref}`;
      throw new Error(`unresolvable part in the definition: ${JSON.stringify(part)}`);
    })
    .join(join[0]);
}

function visitStates(
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

/** Hash of every file under infra/ and of the lock file (the CDK version). */
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
  hash.update(readFileSync(join(root, 'package-lock.json')));
  return hash.digest('hex').slice(0, 32);
}
