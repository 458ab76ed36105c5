// listenUnix where the socket's directory is a mount point (a tmpfs here, a
// scratch XFS in the bench, /run/tsblock on some hosts): the private bind
// directory must be made inside that directory, so the rename that publishes
// the socket stays on one filesystem, and nothing is left beside it.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { rootReason } from '../../helpers/env.js';
import { mountOne, releaseMount, type MountHandle } from '../../../src/sys/mount.js';
import { listenUnix, shutdownServer } from '../../../src/server/listen.js';

describe.skipIf(rootReason !== undefined)(`listenUnix on a mount point${rootReason ? ` (skipped: ${rootReason})` : ''}`, () => {
  let outer: string;
  let mnt: string;
  let handle: MountHandle | undefined;

  beforeEach(() => {
    outer = mkdtempSync('/tmp/tsblock-listen-');
    mnt = join(outer, 'run');
    mkdirSync(mnt);
    handle = mountOne({ type: 'tmpfs', source: 'tmpfs', options: ['size=1m', 'mode=0755'] }, mnt);
  });

  afterEach(() => {
    if (handle) releaseMount(handle);
    handle = undefined;
    rmSync(outer, { recursive: true, force: true });
  });

  it('binds a socket whose directory is a mount point, leaving no private directory anywhere', async () => {
    const socket = join(mnt, 'tsblock.sock');
    const srv = new grpc.Server();
    try {
      await listenUnix(srv, socket, { mode: 0o660 });
      expect(statSync(socket).isSocket()).toBe(true);
      expect(statSync(socket).mode & 0o777).toBe(0o660);
      expect(readdirSync(mnt)).toEqual(['tsblock.sock']);
      expect(readdirSync(outer)).toEqual(['run']);
    } finally {
      await shutdownServer(srv, 500);
    }
  });
});
