import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          // Unit tests first: they are fast and say most about a broken change.
          sequence: { groupOrder: 0 },
          include: ['src/**/*.test.ts', 'dev/**/*.test.ts', 'bench/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'e2e',
          sequence: { groupOrder: 1 },
          include: ['test/e2e/**/*.test.ts'],
          environment: 'node',
          // One real stack for the whole run, started once and always stopped.
          globalSetup: ['test/e2e/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 300_000,
          // Files share the stack; each works in its own namespace and key prefix. Three at once on two
          // cores: most e2e time is waiting out real windows (outages, leases, deadlines), not CPU.
          fileParallelism: true,
          maxWorkers: 3,
        },
      },
    ],
  },
});
