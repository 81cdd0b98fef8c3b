import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A test runs the stack as deployed: each world cold-starts its functions in workers (design.md).
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    globalSetup: ['test/world/global-setup.ts'],
  },
});
