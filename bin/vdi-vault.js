#!/usr/bin/env node
// Launcher: the CLI is TypeScript run by Node 24's type stripping. npm scripts and npx put the package's
// own Node 24 first on PATH, but a user may call this with an older system node: re-exec with ours.
import { spawnSync } from 'node:child_process';
import process from 'node:process';
import { fileURLToPath, URL } from 'node:url';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  const node = fileURLToPath(new URL('../node_modules/.bin/node', import.meta.url));
  const script = fileURLToPath(import.meta.url);
  const child = spawnSync(node, [script, ...process.argv.slice(2)], { stdio: 'inherit' });
  if (child.error) {
    process.stderr.write(
      `vdi-vault needs Node.js 24 or later (this is ${process.version}), and ${node} could not run: ` +
        `${child.error.message}. Run \`npm ci\` in the package, or use Node.js 24.\n`,
    );
    process.exit(4);
  }
  // A signal that ended the child ends us the same way (Ctrl-C exits 130, not 0).
  if (child.signal) process.kill(process.pid, child.signal);
  process.exit(child.status ?? 1);
} else {
  await import('../cli/main.ts');
}
