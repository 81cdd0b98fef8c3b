/**
 * One export in a fresh process: `node bench/export-child.ts`, its input (OneExportInput) as JSON in
 * VDI_VAULT_BENCH_EXPORT (the environment, not argv: it carries the simulator's password). Prints one
 * JSON line (ChildExport). The simulator runs elsewhere, so maxRSS and CPU are the pipeline's alone (plus
 * Node's own baseline). The bench times the whole process; `seconds` is the exportToS3 call alone.
 */
import { runOneExport, type OneExportInput } from './one-export.ts';
import { startResourceSampler } from './sampler.ts';

const sampler = startResourceSampler();
const input = JSON.parse(process.env.VDI_VAULT_BENCH_EXPORT ?? '') as OneExportInput;
const result = await runOneExport(input);
const line = {
  bytes: result.export.bytes,
  sha256: result.export.sha256,
  seconds: result.seconds,
  partSize: result.export.partSize,
  ...sampler.finish(),
};
process.stdout.write(`${JSON.stringify(line)}\n`);
