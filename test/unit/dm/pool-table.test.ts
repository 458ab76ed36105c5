// poolZeroesNewBlocks: whether a thin-pool's table line (as TABLE_STATUS
// returns it) zeroes newly provisioned blocks, which decides whether mkfs may
// assume a fresh thin device reads zeros.
import { describe, expect, it } from 'vitest';
import { POOL_FEATURES, poolZeroesNewBlocks, thinPoolTable } from '../../../src/sys/dm-thin.js';

describe('poolZeroesNewBlocks', () => {
  it('is true for the pool tsblock owns', () => {
    expect(POOL_FEATURES).not.toContain('skip_block_zeroing');
    expect(poolZeroesNewBlocks(thinPoolTable('7:0', '7:1', 2097152, 128, 10).params)).toBe(true);
  });

  it('is false for a pool with skip_block_zeroing among its features', () => {
    expect(poolZeroesNewBlocks('253:0 253:1 128 32768 1 skip_block_zeroing')).toBe(false);
    expect(poolZeroesNewBlocks('253:0 253:1 128 32768 2 error_if_no_space skip_block_zeroing ')).toBe(false);
  });

  it('is true with no features or others only', () => {
    expect(poolZeroesNewBlocks('253:0 253:1 128 32768 0')).toBe(true);
    expect(poolZeroesNewBlocks('253:0 253:1 128 32768 2 ignore_discard no_discard_passdown')).toBe(true);
  });

  it('refuses a line it cannot read rather than guessing', () => {
    expect(() => poolZeroesNewBlocks('')).toThrow(/cannot parse thin-pool table/);
    expect(() => poolZeroesNewBlocks('253:0 253:1 128 32768')).toThrow(/cannot parse/);
    expect(() => poolZeroesNewBlocks('253:0 253:1 128 32768 2 skip_block_zeroing')).toThrow(/cannot parse/);
  });
});
