/** The `vdi-vault` command (bin/vdi-vault.js loads this on Node 24). Reference: docs/cli.md. */
import { run } from './run.ts';

process.exitCode = await run(process.argv.slice(2));
