import { defineConfig } from 'vitest/config';

// Integration tests share the machine's loop devices and mount table; they
// run one file at a time so their leak checks only ever see their own objects.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    reporters: ['default'],
  },
});
