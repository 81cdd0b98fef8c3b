import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { STEP_ENV } from '../infra/constructs/step-function.ts';
import { childEnv, NODE, REPO, SCRATCH } from './paths.ts';

const run = promisify(execFile);

export interface Bundle {
  /** The workflow whose functions share the bundle (`backup`, `restore`). */
  readonly name: string;
  /** The steps (`VDI_VAULT_STEP`) whose functions run it. */
  readonly steps: string[];
  /** Every file of the synthesized asset (the minified ESM bundle, the AWS SDK inside). */
  readonly bytes: number;
  /** Median time to `import()` the bundle in a fresh Node process. */
  readonly importMs: number;
}

export interface BundleReport {
  readonly bundles: Bundle[];
  readonly synthSeconds: number;
  /** Functions CDK adds itself (no VDI_VAULT_STEP): listed, not measured. */
  readonly otherFunctions: string[];
}

interface TemplateFunction {
  Type: string;
  Properties?: {
    Code?: { S3Key?: unknown };
    Handler?: string;
    Environment?: { Variables?: Record<string, unknown> };
  };
  Metadata?: Record<string, unknown>;
}

/**
 * `cdk synth -q` into .bench/cdk.out (the shared cdk.out stays untouched), then for each Lambda of ours:
 * its asset folder from `Code.S3Key` (`<hash>.zip` ↔ `asset.<hash>/`), its size, and its import time.
 */
export async function measureBundles(importRuns: number, log: (line: string) => void): Promise<BundleReport> {
  const outdir = join(SCRATCH, 'cdk.out');
  rmSync(outdir, { recursive: true, force: true });
  const started = performance.now();
  await run(join(REPO, 'node_modules', '.bin', 'cdk'), ['synth', '-q', '--no-notices', '-o', outdir], {
    cwd: REPO,
    env: childEnv({ CDK_DISABLE_CLI_TELEMETRY: 'true' }),
    maxBuffer: 16 << 20,
    timeout: 300_000,
  }).catch((error: { stderr?: string; message: string }) => {
    throw new Error(
      `cdk synth failed: ${(error.stderr ?? error.message).trim().split('\n').slice(-5).join(' | ')}`,
    );
  });
  const synthSeconds = (performance.now() - started) / 1000;
  log(`synthesized in ${synthSeconds.toFixed(1)} s`);

  const byAsset = new Map<string, { entry: string; steps: string[] }>();
  const otherFunctions: string[] = [];
  for (const file of readdirSync(outdir).filter((name) => name.endsWith('.template.json'))) {
    const template = JSON.parse(readFileSync(join(outdir, file), 'utf8')) as {
      Resources?: Record<string, TemplateFunction>;
    };
    for (const [logicalId, resource] of Object.entries(template.Resources ?? {})) {
      if (resource.Type !== 'AWS::Lambda::Function') continue;
      const step = resource.Properties?.Environment?.Variables?.[STEP_ENV];
      if (typeof step !== 'string') {
        otherFunctions.push(logicalId);
        continue;
      }
      const assetDir = assetFolder(outdir, resource);
      const known = byAsset.get(assetDir);
      if (known) known.steps.push(step);
      else
        byAsset.set(assetDir, {
          entry: entryFile(assetDir, resource.Properties?.Handler ?? 'index.handler'),
          steps: [step],
        });
    }
  }
  const bundles: Bundle[] = [];
  for (const [assetDir, { entry, steps }] of byAsset) {
    // As Lambda runs it: the asset alone in an empty directory, no node_modules above it.
    const alone = mkdtempSync(join(tmpdir(), 'vdi-vault-bench-bundle-'));
    cpSync(assetDir, alone, { recursive: true });
    const times: number[] = [];
    try {
      for (let i = 0; i < importRuns; i++) times.push(await importTime(join(alone, basename(entry)), alone));
    } finally {
      rmSync(alone, { recursive: true, force: true });
    }
    const name = steps[0]!.split('.')[0]!;
    bundles.push({ name, steps: steps.sort(), bytes: folderBytes(assetDir), importMs: round(median(times)) });
    log(
      `${name} (${steps.length} functions): ${bundles.at(-1)!.bytes} bytes, import ${bundles.at(-1)!.importMs} ms`,
    );
  }
  if (bundles.length === 0)
    throw new Error('the synthesized template has no function carrying VDI_VAULT_STEP');
  bundles.sort((a, b) => a.name.localeCompare(b.name));
  return { bundles, synthSeconds: round(synthSeconds), otherFunctions };
}

function assetFolder(outdir: string, resource: TemplateFunction): string {
  const key = resource.Properties?.Code?.S3Key;
  const hash = typeof key === 'string' ? /^([0-9a-f]{64})\.zip$/.exec(key)?.[1] : undefined;
  const path = hash ? `asset.${hash}` : resource.Metadata?.['aws:asset:path'];
  if (typeof path !== 'string' || !existsSync(join(outdir, path))) {
    throw new Error(`no asset folder for S3Key ${JSON.stringify(key)}`);
  }
  return join(outdir, path);
}

/** `index.handler` → index.mjs (ESM bundle) or index.js. */
function entryFile(assetDir: string, handler: string): string {
  const base = handler.slice(0, handler.lastIndexOf('.'));
  for (const extension of ['.mjs', '.js', '.cjs']) {
    const file = join(assetDir, base + extension);
    if (existsSync(file)) return file;
  }
  throw new Error(`no ${base}.mjs or .js in ${assetDir}`);
}

function folderBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const stats = statSync(join(dir, entry));
    if (stats.isFile()) total += stats.size;
  }
  return total;
}

/**
 * Milliseconds for `await import(bundle)` in a fresh Node process, from an empty directory: module loading
 * and top-level code, which is what a cold start adds before the handler runs. A module the bundle does
 * not contain fails here as it would in Lambda.
 */
async function importTime(file: string, cwd: string): Promise<number> {
  const code =
    'const t = performance.now(); await import(process.env.BENCH_IMPORT); ' +
    'process.stdout.write(String(performance.now() - t));';
  const { stdout } = await run(NODE, ['--input-type=module', '-e', code], {
    cwd,
    env: childEnv({ BENCH_IMPORT: file }),
  });
  return Number(stdout);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
