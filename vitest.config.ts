import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // Outside the clone, like every other cache (Makefile): the last run's durations, from which a warm run starts
  // the longest e2e files first — in the clone's node_modules they were lost with each fresh clone, and files ran
  // by size, which left the outage files (mostly waiting) to a tail that kept the machine half idle for minutes.
  cacheDir: join(homedir(), '.cache', 'ai-operator', 'vite'),
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          // Unit tests first: they are fast and say most about a broken change.
          sequence: { groupOrder: 0 },
          include: ['src/**/*.test.ts', 'dev/**/*.test.ts', 'bench/**/*.test.ts'],
          environment: 'node',
          // Vitest's default is one worker less than the cores: one on a two-core machine, half of it idle for the
          // whole unit phase (102 s there; 61 s with two workers, 77 s with three).
          maxWorkers: Math.max(2, availableParallelism() - 1),
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
          // Files share the stack; each works in its own namespace and key prefix. Four at once on two
          // cores: most e2e time is waiting out real windows (outages, leases, deadlines), not CPU — with three,
          // the machine was 28 % idle over the e2e phase, 30–60 % while the long outage files ran together.
          fileParallelism: true,
          maxWorkers: 4,
        },
      },
    ],
  },
});
