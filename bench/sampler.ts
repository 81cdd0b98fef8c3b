/**
 * Where a bench child's memory goes, sampled every 50 ms: if buffers stay flat while RSS grows, the
 * allocator holds the rest. `finish()` adds peak RSS (the kernel's, not sampled) and the process's CPU.
 */
export function startResourceSampler() {
  let peakHeap = 0;
  let peakArrayBuffers = 0;
  const sampler = setInterval(() => {
    const usage = process.memoryUsage();
    peakHeap = Math.max(peakHeap, usage.heapTotal);
    peakArrayBuffers = Math.max(peakArrayBuffers, usage.arrayBuffers);
  }, 50);
  const MiB = 1024 * 1024;
  return {
    finish() {
      clearInterval(sampler);
      const cpu = process.cpuUsage();
      return {
        // resourceUsage().maxRSS is in kilobytes (KiB on Linux).
        maxRssKiB: process.resourceUsage().maxRSS,
        peakHeapMiB: Math.round((peakHeap / MiB) * 10) / 10,
        peakArrayBuffersMiB: Math.round((peakArrayBuffers / MiB) * 10) / 10,
        cpuMs: Math.round((cpu.user + cpu.system) / 1000),
      };
    },
  };
}

export type SampledResources = ReturnType<ReturnType<typeof startResourceSampler>['finish']>;
