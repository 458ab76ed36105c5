// ext4GroupFlags reads dumpe2fs's group lines into bg_flags values.
import { describe, expect, it } from 'vitest';
import { ext4GroupFlags } from '../../../src/sys/exec.js';

const LISTING = `Filesystem volume name:   <none>
Group 0: (Blocks 0-32767) csum 0x570f [ITABLE_ZEROED]
  Primary superblock at 0, Group descriptors at 1-1
Group 1: (Blocks 32768-65535) csum 0xac91 [INODE_UNINIT, BLOCK_UNINIT, ITABLE_ZEROED]
Group 2: (Blocks 65536-98303) csum 0x2dbf [INODE_UNINIT, BLOCK_UNINIT]
Group 3: (Blocks 98304-131071) csum 0xc813 [INODE_UNINIT]
Group 4: (Blocks 131072-163839) csum 0x1234
`;

describe('ext4GroupFlags', () => {
  it('maps each group to its flags, a group without a bracket to 0', () => {
    expect(ext4GroupFlags({ stdout: LISTING })).toEqual([0x4, 0x7, 0x3, 0x1, 0x0]);
  });
  it('ignores lines that are not group headers', () => {
    expect(ext4GroupFlags({ stdout: 'Group descriptors at 1-1\n  Group 3: x\n' })).toEqual([]);
  });
});
