import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A test runs the stack as deployed: each world cold-starts its functions in workers (design.md).
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two files at a time, also on a 2-core machine (vitest's default there is one): most of a workflow
    // test waits on loopback servers, Lambda workers and child processes, not on its own CPU.
    maxWorkers: 2,
    globalSetup: ['test/world/global-setup.ts'],
  },
});
