/**
 * One export in a fresh process: `node bench/export-child.ts`, its input (OneExportInput) as JSON in
 * VDI_VAULT_BENCH_EXPORT (the environment, not argv: it carries the simulator's password). Prints one
 * JSON line (ChildExport). The simulator runs elsewhere, so maxRSS and CPU are the pipeline's alone (plus
 * Node's own baseline). The bench times the whole process; `seconds` is the exportToS3 call alone.
 */
import { runOneExport, type OneExportInput } from './one-export.ts';

// Where the memory goes, sampled: if buffers stay flat while RSS grows, the allocator holds the rest.
let peakHeap = 0;
let peakArrayBuffers = 0;
const sampler = setInterval(() => {
  const usage = process.memoryUsage();
  peakHeap = Math.max(peakHeap, usage.heapTotal);
  peakArrayBuffers = Math.max(peakArrayBuffers, usage.arrayBuffers);
}, 50);

const input = JSON.parse(process.env.VDI_VAULT_BENCH_EXPORT ?? '') as OneExportInput;
const result = await runOneExport(input);
clearInterval(sampler);
const MiB = 1024 * 1024;
const cpu = process.cpuUsage();
const line = {
  bytes: result.export.bytes,
  seconds: result.seconds,
  partSize: result.export.partSize,
  // resourceUsage().maxRSS is in kilobytes (KiB on Linux).
  maxRssKiB: process.resourceUsage().maxRSS,
  peakHeapMiB: Math.round((peakHeap / MiB) * 10) / 10,
  peakArrayBuffersMiB: Math.round((peakArrayBuffers / MiB) * 10) / 10,
  cpuMs: Math.round((cpu.user + cpu.system) / 1000),
};
process.stdout.write(`${JSON.stringify(line)}\n`);
