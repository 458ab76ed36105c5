// isUnpackKey: which snapshots get the unpack mount (tsblock's own loop
// device, no barriers). Through containerd the key arrives as its metadata's
// backend key, "<namespace>/<n>/<key>"; missing that form meant no layer
// unpacked by containerd ever got it.

import { describe, expect, it } from 'vitest';
import { isUnpackKey } from '../../../src/backends/blockfile/blockfile.js';

describe('isUnpackKey', () => {
  it.each([
    'extract-123456789-AbCd sha256:0123abcd',
    'default/17/extract-548964583-Vjzv sha256:974f62d83ddf',
    'k8s.io/3/extract-1-x sha256:1',
    'tsblock-extract-4 sha256:abcd',
  ])('an unpack key: %s', (key) => expect(isUnpackKey(key)).toBe(true));

  it.each([
    undefined,
    '',
    'default/17/my-container',
    'default/17/sha256:974f62d83ddf',
    'default/x/extract-1 sha256:1', // the id part is a number
    'a/b/17/extract-1 sha256:1', // a namespace has no slash
    'my-extract-1',
    'default/17/container-extract-1',
  ])('not an unpack key: %s', (key) => expect(isUnpackKey(key)).toBe(false));
});
