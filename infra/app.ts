import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { fileURLToPath } from 'node:url';
import { loadConfigFile, parseConfig } from './config/config.ts';
import { DEFAULT_STACK_NAME } from '../lambdas/runtime/defaults.ts';
import { VdiVaultStack } from './vdi-vault-stack.ts';

/**
 * Builds the app: configuration from context `config` (JSON object or string) or `configFile` (a path),
 * else the shipped example; the configuration is validated first and an error names the field.
 * `nagChecks` (default true) runs cdk-nag at synth; the local runner skips it (the template is the same,
 * and the checks have their own test).
 */
export function buildApp(
  app = new App(),
  options: { nagChecks?: boolean } = {},
): { app: App; stack: VdiVaultStack } {
  const inline = app.node.tryGetContext('config') as unknown;
  const file =
    (app.node.tryGetContext('configFile') as string | undefined) ??
    fileURLToPath(new URL('./config/example.config.json', import.meta.url));
  const config = inline
    ? parseConfig(typeof inline === 'string' ? JSON.parse(inline) : inline)
    : loadConfigFile(file);
  const stack = new VdiVaultStack(app, DEFAULT_STACK_NAME, { config });
  if (options.nagChecks !== false) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  buildApp().app.synth();
}
