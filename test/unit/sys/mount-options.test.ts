import { describe, expect, it } from 'vitest';
import {
  MS_BIND,
  MS_NOATIME,
  MS_NODEV,
  MS_NOEXEC,
  MS_NOSUID,
  MS_PRIVATE,
  MS_RDONLY,
  MS_REC,
  MS_RELATIME,
  MS_REMOUNT,
  parseMountOptions,
} from '../../../src/sys/mount-options.js';

describe('parseMountOptions', () => {
  it('maps flag words to MS_* bits and keeps the rest as data', () => {
    const p = parseMountOptions(['ro', 'nosuid', 'nodev', 'noexec', 'noatime', 'noload', 'errors=remount-ro']);
    expect(p.flags).toBe(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME);
    expect(p.data).toBe('noload,errors=remount-ro');
    expect(p.readOnly).toBe(true);
    expect(p.loop).toBe(false);
  });

  it('strips the loop and direct-io pseudo-options', () => {
    const p = parseMountOptions(['loop', 'rw', 'direct-io', 'discard']);
    expect(p.loop).toBe(true);
    expect(p.directIo).toBe(true);
    expect(p.data).toBe('discard');
    expect(p.flags).toBe(0);
    expect(p.readOnly).toBe(false);
  });

  it('lets the last of ro/rw win', () => {
    expect(parseMountOptions(['ro', 'rw']).readOnly).toBe(false);
    expect(parseMountOptions(['rw', 'ro']).readOnly).toBe(true);
    expect(parseMountOptions(['noatime', 'atime']).flags).toBe(0);
  });

  it('handles bind, rbind, remount and relatime', () => {
    expect(parseMountOptions(['bind']).flags).toBe(MS_BIND);
    expect(parseMountOptions(['rbind']).flags).toBe(MS_BIND | MS_REC);
    expect(parseMountOptions(['remount', 'ro']).flags).toBe(MS_REMOUNT | MS_RDONLY);
    expect(parseMountOptions(['relatime']).flags).toBe(MS_RELATIME);
  });

  it('keeps propagation types apart from the main flags', () => {
    const p = parseMountOptions(['rbind', 'rprivate']);
    expect(p.flags).toBe(MS_BIND | MS_REC);
    expect(p.propagation).toBe(MS_PRIVATE | MS_REC);
  });

  it('treats Object.prototype names as data, not flags', () => {
    const p = parseMountOptions(['constructor', 'toString', '', 'nouuid']);
    expect(p.flags).toBe(0);
    expect(p.data).toBe('constructor,toString,nouuid');
  });
});
