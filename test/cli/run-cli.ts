import { spawn } from 'node:child_process';

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `bin/vdi-vault.js` as a real process on the package's Node 24 and collects its output. */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const child = startCli(args, env);
  return child.result;
}

export function startCli(args: readonly string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn('node_modules/.bin/node', ['bin/vdi-vault.js', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // NO_COLOR unset and no TTY: plain output, as scripts see it.
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const result = new Promise<CliResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { child, result, stderr: () => stderr };
}
