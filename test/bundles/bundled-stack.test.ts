/**
 * The bundles as Lambda and Fargate run them: the app synthesized with bundling into a real `cdk.out`, each
 * function's asset copied alone into an empty directory (no node_modules anywhere above it) and run there
 * against the local world; each asset imported on its own in a fresh process with its function's
 * environment; no AWS SDK module left to the runtime; error class names kept through minification; the
 * container bundle refusing bad parameters as its entrypoint documents.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalStack, type Template } from '../../world/local/aws/account.ts';
import { deployLocally, localConfig, type LocalDeployment } from '../../world/local/local-deployment.ts';
import {
  bundledCode,
  synthesizeBundledApp,
  type SynthesizedApp,
} from '../../world/local/synthesized-workflows.ts';
import type { BackupSummary } from '../../lambdas/backup/state.ts';
import type { RestoreResult } from '../../lambdas/restore/state.ts';
import { TRANSFER_ENV } from '../../lambdas/transfer/transfer-task.ts';
import { VHD_BLOCK_SIZE } from '../../lambdas/vhd/index.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';

const MiB = 1024 * 1024;
const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
const run = promisify(execFile);

interface LambdaAsset {
  readonly logicalId: string;
  readonly step: string;
  /** `index.<export>` */
  readonly handler: string;
  readonly dir: string;
  readonly environment: Record<string, string>;
}

/** Each step function of the template with its asset directory in `cdk.out` and its resolved environment. */
function lambdaAssets(app: SynthesizedApp): LambdaAsset[] {
  const stack = new LocalStack(app.template as unknown as Template);
  return stack
    .resourcesOfType('AWS::Lambda::Function')
    .map(([logicalId, resource]) => {
      const properties = resource.Properties ?? {};
      const environment = stack.resolve(
        (properties.Environment as { Variables?: unknown } | undefined)?.Variables ?? {},
      ) as Record<string, string>;
      const asset = resource.Metadata?.['aws:asset:path'];
      if (typeof asset !== 'string') throw new Error(`${logicalId} has no asset in cdk.out`);
      return {
        logicalId,
        step: environment.VDI_VAULT_STEP ?? '',
        handler: String(properties.Handler),
        dir: join(app.assemblyDir!, asset),
        environment,
      };
    })
    .filter((asset) => asset.step !== '');
}

/** The variables Lambda sets in every execution environment (credentials: dummies, nothing is called). */
function lambdaVariables(asset: LambdaAsset, taskRoot: string): Record<string, string> {
  const functionName = `VdiVault-${asset.logicalId}`;
  return {
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'ASIALOCAL',
    AWS_SECRET_ACCESS_KEY: 'local',
    AWS_SESSION_TOKEN: 'local',
    AWS_LAMBDA_FUNCTION_NAME: functionName,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${functionName}`,
    AWS_LAMBDA_LOG_STREAM_NAME: 'local',
    AWS_LAMBDA_LOG_FORMAT: 'JSON',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
    AWS_XRAY_CONTEXT_MISSING: 'LOG_ERROR',
    AWS_XRAY_DAEMON_ADDRESS: '127.0.0.1:2000',
    LAMBDA_TASK_ROOT: taskRoot,
    _HANDLER: asset.handler,
    TZ: ':UTC',
    LANG: 'en_US.UTF-8',
  };
}

/** What the child process reports after importing `index.mjs` from its working directory. */
const IMPORT_PROBE = `
import { pathToFileURL } from 'node:url';
const exportName = process.env._HANDLER.split('.').slice(1).join('.');
const started = performance.now();
const module = await import(pathToFileURL(process.cwd() + '/index.mjs').href);
process.stdout.write(JSON.stringify({
  exportName,
  type: typeof module[exportName],
  importMs: Math.round(performance.now() - started),
}));
process.exit(0);
`;

/**
 * The modules a minified esbuild ESM bundle leaves to its runtime: static and dynamic imports
 * (`from"x"`, `import"x"`, `import("x")`) and CommonJS requires, which esbuild routes through its
 * `__require` helper (renamed when minified, found by its body) or leaves as `require("x")`. Minified
 * imports carry no space before the specifier; a `[require("…")]` or `[import "…"]` is prose inside a
 * string (the AWS SDK's hint about its optional CRT signer), not code.
 */
function externalSpecifiers(code: string): string[] {
  // esbuild's helper: `var U=(t=>typeof require<"u"?require:…)(…)`; found by its body, named by what precedes.
  const helpers: string[] = [];
  for (
    let at = code.indexOf('=>typeof require<"u"?require:');
    at >= 0;
    at = code.indexOf('=>typeof require<"u"?require:', at + 1)
  ) {
    const name = /([\w$]+)=\(?[\w$]+$/.exec(code.slice(Math.max(0, at - 40), at))?.[1];
    if (name) helpers.push(name);
  }
  const callers = ['require', ...helpers].map((name) => name.replace(/\$/g, '\\$')).join('|');
  // A specifier: a package or a path (no spaces, commas, parentheses), not the inside of another string.
  const specifier = '(["\'\\x60])([\\w@.~/:+-]+)\\1';
  const patterns = [
    new RegExp(`from${specifier}`, 'g'),
    new RegExp(`import\\(?${specifier}`, 'g'),
    new RegExp(`(?:${callers})\\(${specifier}\\)`, 'g'),
  ];
  const found = new Set<string>();
  for (const pattern of patterns) {
    for (const match of code.matchAll(pattern)) {
      // Part of a longer name (`xfrom`), a member (`a.require`) or prose in a string (`[require(`, `"import`).
      if (/[\w$.['"\x60]/.test(code[match.index - 1] ?? '')) continue;
      found.add(match[2]!);
    }
  }
  return [...found].sort();
}

/**
 * Modules a bundle may leave external besides Node's own: undici's experimental Milo parser, which undici
 * requires only when UNDICI_USE_MILO is set (the construct marks it external; we never set it).
 */
const ALLOWED_EXTERNAL = /\/node_modules\/undici\/lib\/milo\/(no-)?simd\.js$/;

/** Class names esbuild keeps (`keepNames`): `class extends X{static{__name(this,"Name")}…`. */
function keptClassNames(code: string): Set<string> {
  return new Set([...code.matchAll(/static\{[\w$]+\(this,"([A-Za-z]\w*)"\)\}/g)].map((m) => m[1]!));
}

describe('the bundled stack (cdk.out) run as Lambda and Fargate run it', () => {
  let world: BackupWorld;
  let outdir: string;
  let app: SynthesizedApp;
  let assets: LambdaAsset[];
  const scratch: string[] = [];
  const emptyDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdi-vault-bundle-test-'));
    scratch.push(dir);
    return dir;
  };

  beforeAll(async () => {
    world = await startBackupWorld({ vdi: { virtualSize: 24 * MiB, populate: 'scattered' } });
    outdir = emptyDir();
    app = synthesizeBundledApp(outdir, localConfig(world.target));
    assets = lambdaAssets(app);
  }, 300_000);
  afterAll(async () => {
    await world?.close();
    for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  });

  describe('end to end through the bundled assets', () => {
    let deployment: LocalDeployment;
    beforeAll(async () => {
      deployment = await deployLocally(world.target, { app });
    });
    afterAll(async () => {
      await deployment?.close();
    });

    it(
      'a full backup, a delta and a restore, bit-exact, with no call denied',
      { timeout: 180_000 },
      async () => {
        expect(app.assemblyDir).toBe(outdir);
        const full = await deployment.runBackup({ vdiUuids: [world.vdiUuid] });
        expect(full.status, full.cause).toBe('SUCCEEDED');
        expect((full.output as BackupSummary).outcomes[0]).toMatchObject({
          status: 'succeeded',
          kind: 'full',
        });

        world.sim.writeDisk(world.vdiUuid, 3 * VHD_BLOCK_SIZE + 4096, randomBytes(2 * VHD_BLOCK_SIZE));
        const delta = await deployment.runBackup({ vdiUuids: [world.vdiUuid] });
        expect(delta.status, delta.cause).toBe('SUCCEEDED');
        expect((delta.output as BackupSummary).outcomes[0]).toMatchObject({
          status: 'succeeded',
          kind: 'delta',
        });
        const latest = (await world.manifests()).at(-1)!;
        expect(latest.kind).toBe('delta');

        const restore = await deployment.runRestore({
          vdiUuid: world.vdiUuid,
          srUuid: world.sim.srs.shared.uuid,
          strategy: 'replay',
        });
        expect(restore.status, restore.cause).toBe('SUCCEEDED');
        const result = restore.output as RestoreResult;
        expect(result.restorePoint).toBe(latest.backupId);
        expect(result.layersApplied).toHaveLength(2);
        expect(world.sim.diskSha256(result.vdiUuid)).toBe(world.sim.diskSha256(latest.snapshotUuid));
        world.sim.deleteVdi(result.vdiUuid);

        // Every function ran from its asset, cold-started once or more.
        const ran = Object.keys(deployment.lambdas.coldStarts);
        expect(ran.length).toBeGreaterThanOrEqual(12);
        expect(deployment.gateway.denied()).toEqual([]);
      },
    );

    it(
      'a truncated export fails naming VhdTruncatedError: error names survive minification',
      {
        timeout: 120_000,
      },
      async () => {
        // A clean FIN mid-body: the bytes simply stop, as when a host dies after sending a part.
        world.sim.injectFault({
          kind: 'drop-connection',
          on: 'export',
          afterBytes: 2 * MiB,
          mode: 'close',
          times: 1,
        });
        const run = await deployment.runBackup({ vdiUuids: [world.vdiUuid], mode: 'full' });
        world.sim.clearFaults();
        expect(run.status).toBe('FAILED');
        expect(run.error).toBe('VhdTruncatedError');
        expect(run.statesEntered).toContain('FailureCleanup');
        expect(await world.openUploads()).toEqual([]);
      },
    );
  });

  it(
    'each Lambda asset is self-contained: imported alone, in a fresh process, from an empty directory, with its function’s environment',
    {
      timeout: 180_000,
    },
    async () => {
      expect(assets.map((asset) => asset.step).sort()).toEqual(
        expect.arrayContaining([
          'backup.export',
          'backup.plan',
          'restore.importLayer',
          'restore.importMerged',
        ]),
      );
      const reports: { step: string; exportName: string; type: string; importMs: number }[] = [];
      const queue = [...assets];
      const worker = async () => {
        for (let asset = queue.shift(); asset; asset = queue.shift()) {
          expect(readdirSync(asset.dir)).toContain('index.mjs');
          expect(
            existsSync(join(asset.dir, 'node_modules')),
            `${asset.step}: node_modules in its asset`,
          ).toBe(false);
          const taskRoot = emptyDir();
          cpSync(asset.dir, taskRoot, { recursive: true });
          const { stdout } = await run(NODE, ['--input-type=module', '-e', IMPORT_PROBE], {
            cwd: taskRoot,
            // Only what Lambda gives the function: its template environment and Lambda's own variables.
            env: { ...asset.environment, ...lambdaVariables(asset, taskRoot) },
            timeout: 60_000,
          });
          reports.push({
            step: asset.step,
            ...(JSON.parse(stdout) as { exportName: string; type: string; importMs: number }),
          });
        }
      };
      await Promise.all([worker(), worker()]);
      console.log(
        `import of each asset in a fresh process:\n${reports
          .sort((a, b) => a.step.localeCompare(b.step))
          .map((report) => `${report.step} (${report.exportName}): ${report.importMs} ms`)
          .join('\n')}`,
      );
      expect(reports).toHaveLength(assets.length);
      for (const report of reports) {
        expect(report, `${report.step}: its Handler export`).toMatchObject({ type: 'function' });
        expect(report.exportName).not.toBe('');
      }
    },
  );

  it('finds what esbuild leaves external (checked on a bundle made to leave the AWS SDK out)', async () => {
    const dir = emptyDir();
    writeFileSync(join(dir, 'dep.cjs'), `module.exports = require('@aws-sdk/client-dynamodb');`);
    writeFileSync(
      join(dir, 'entry.mjs'),
      `import { S3Client } from '@aws-sdk/client-s3';
       import dep from './dep.cjs';
       export const lazy = () => import('@aws-sdk/client-sfn');
       export { S3Client, dep };`,
    );
    const result = await build({
      entryPoints: [join(dir, 'entry.mjs')],
      bundle: true,
      write: false,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      minify: true,
      keepNames: true,
      external: ['@aws-sdk/*'],
      logLevel: 'silent',
    });
    expect(externalSpecifiers(result.outputFiles[0]!.text)).toEqual([
      '@aws-sdk/client-dynamodb',
      '@aws-sdk/client-s3',
      '@aws-sdk/client-sfn',
    ]);
    // The SDK's prose about its optional CRT signer is no import.
    expect(
      externalSpecifiers(
        `throw new Error('register the package by calling [require("@aws-sdk/signature-v4-crt");] or [import "@aws-sdk/signature-v4-crt";]')`,
      ),
    ).toEqual([]);
  });

  it('no bundle leaves the AWS SDK (or any module but Node’s own) to the runtime', async () => {
    const bundles = [
      ...new Set(assets.map((asset) => join(asset.dir, 'index.mjs'))),
      (await bundledCode()).container,
    ];
    expect(bundles.length).toBeGreaterThanOrEqual(3);
    for (const bundle of bundles) {
      const code = readFileSync(bundle, 'utf8');
      const external = externalSpecifiers(code);
      expect(
        external.filter((specifier) => specifier.startsWith('@aws-sdk/')),
        bundle,
      ).toEqual([]);
      expect(
        external.filter((specifier) => !isBuiltin(specifier) && !ALLOWED_EXTERNAL.test(specifier)),
        `${bundle}: modules left external`,
      ).toEqual([]);
      // The detector sees the bundle's requires (Node's own are left to the runtime, as they must be).
      expect(external, bundle).toContainEqual(expect.stringMatching(/^(node:)?crypto$/));
      // The SDK is in the bundle itself.
      expect(code).toContain('S3Client');
    }
  });

  it('keeps the error class names the workflows catch and the README names (keepNames)', async () => {
    const byStep = (prefix: string) => {
      const asset = assets.find((candidate) => candidate.step.startsWith(prefix));
      if (!asset) throw new Error(`no ${prefix} asset`);
      return keptClassNames(readFileSync(join(asset.dir, 'index.mjs'), 'utf8'));
    };
    const backup = byStep('backup.');
    const restore = byStep('restore.');
    const container = keptClassNames(readFileSync((await bundledCode()).container, 'utf8'));
    // The export validates the VHD stream as it flows: the parser's errors are in the backup and container bundles.
    for (const name of [
      'VhdTruncatedError',
      'VhdFormatError',
      'VhdFooterChecksumError',
      'XapiError',
      'XapiNetworkError',
    ]) {
      expect(backup, `backup bundle: ${name}`).toContain(name);
      expect(container, `container bundle: ${name}`).toContain(name);
    }
    // A restore reads manifests and layers it already validated; its bundle has the catalog's and XAPI's errors.
    for (const name of [
      'CatalogError',
      'InputValidationError',
      'VhdFormatError',
      'XapiError',
      'XapiHttpError',
    ]) {
      expect(restore, `restore bundle: ${name}`).toContain(name);
    }
    expect(backup).toContain('BackupAlreadyRunningError');
  });

  it.each([
    ['no parameters at all', {}, TRANSFER_ENV.step],
    [
      'a step and its input, but no result key',
      {
        [TRANSFER_ENV.step]: 'backup.export',
        [`${TRANSFER_ENV.fieldPrefix}vdiUuid`]: '"x"',
      },
      TRANSFER_ENV.resultKey,
    ],
  ])(
    'the container bundle, alone in an empty directory, exits 2 naming what is missing: %s',
    async (_what, env, missing) => {
      const dir = emptyDir();
      const entry = join(dir, basename((await bundledCode()).container));
      copyFileSync((await bundledCode()).container, entry);
      const child = spawn(NODE, [entry], {
        cwd: dir,
        env: { ...env, AWS_REGION: 'us-east-1', AWS_EXECUTION_ENV: 'AWS_ECS_FARGATE' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(code, stderr).toBe(2);
      expect(stderr).toContain(missing);
      expect(stderr).toMatch(/is missing/);
    },
  );
});
