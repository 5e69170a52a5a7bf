import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Child processes rather than worker threads: the library under test uses
    // threads itself, and the helpers need process signals to clean up servers.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores, and each file starts real servers and worker threads.
    fileParallelism: false,
  },
});
