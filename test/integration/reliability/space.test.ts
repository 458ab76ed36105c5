// Space: with the root on a small filesystem, Prepare fails early with
// RESOURCE_EXHAUSTED and a clear message once free space is below the
// --min-free reserve (and works again when space comes back); a container
// filling its own volume gets ENOSPC inside that volume only: other
// snapshots, the server and the root stay healthy.

import { createServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, rmdirSync, writeFileSync, writeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { rootReason } from '../../helpers/env.js';
import { TestClient, failure, grpc } from '../../helpers/client.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { releaseStore } from '../../helpers/store.js';
import { mountOne, releaseMount, type MountHandle } from '../../../src/sys/mount.js';
import { checkSpace, guardOn, parseMinFree, spaceEvents, thresholdBytes, type LowSpaceEvent } from '../../../src/core/space.js';
import { ServerProc, distReason, tail } from '../../helpers/server.js';
import { recordFigures } from './figures.js';

const reason = rootReason ?? distReason;

describe('low-space guard (pure)', () => {
  it('parses sizes and percentages and refuses below the larger reserve', () => {
    expect(parseMinFree('5%')).toEqual({ percent: 5 });
    expect(parseMinFree('1G')).toEqual({ bytes: 1024 ** 3 });
    expect(() => parseMinFree('120%')).toThrow(/percentage/);
    expect(thresholdBytes({ bytes: 10, percent: 50 }, 100)).toBe(50);
    const seen: LowSpaceEvent[] = [];
    const on = (e: LowSpaceEvent) => seen.push(e);
    spaceEvents.on('low-space', on);
    try {
      expect(() => checkSpace({ free: 40, total: 100, what: 'x' }, { percent: 50 })).toThrow(/not enough free space.*x has 40 B? ?free|not enough free space/);
      expect(() => checkSpace({ free: 60, total: 100, what: 'x' }, { percent: 50 })).not.toThrow();
      expect(() => checkSpace({ free: 0, total: 100, what: 'x' }, { bytes: 0 })).not.toThrow();
    } finally {
      spaceEvents.off('low-space', on);
    }
    expect(seen).toHaveLength(1);
    expect(seen[0]!.threshold).toBe(50);
    // --min-free 0 turns the guard off: the core then takes no reading at all.
    expect(parseMinFree('0')).toEqual({ bytes: 0 });
    expect(parseMinFree(0)).toEqual({ bytes: 0 }); // min_free = 0 in the TOML config
    expect(guardOn(parseMinFree('0'))).toBe(false);
    expect(guardOn(parseMinFree('0%'))).toBe(false);
    expect(guardOn(parseMinFree('1%'))).toBe(true);
    expect(guardOn(parseMinFree('512M'))).toBe(true);
  });
});

describe.skipIf(reason)(`space on a real server${reason ? ` (skipped: ${reason})` : ''}`, () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const f of cleanups.splice(0).reverse()) {
      try {
        await f();
      } catch {
        // keep releasing the rest
      }
    }
  });

  it('refuses Prepare with RESOURCE_EXHAUSTED below --min-free, and recovers when space returns', async () => {
    const dir = mkdtempSync('/var/tmp/tsblock-space-');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    // The root lives on its own small ext4, so "nearly full" is cheap to reach.
    const img = join(dir, 'fs.img');
    const fsdir = join(dir, 'fs');
    mkdirSync(fsdir);
    execFileSync('truncate', ['-s', '256M', img]);
    execFileSync('mkfs.ext4', ['-q', '-F', img]);
    const h = mountOne({ type: 'ext4', source: img, options: ['loop'] }, fsdir);
    cleanups.push(() => releaseMount(h));
    const socket = join(dir, 's.sock');
    const log = join(dir, 'serve.log');
    const port = await freePort();
    const { proc, state } = await ServerProc.start({
      root: join(fsdir, 'root'),
      socket,
      log,
      args: ['--min-free', '40%', '--log-level', 'info', '--metrics-address', `127.0.0.1:${port}`],
    });
    cleanups.push(() => proc.kill9());
    expect(state, tail(log)).toBe('up');
    expect(tail(log, 200)).toMatch(/"minFree":"40%".*"msg":"low-space guard"/);
    const c = new TestClient(socket);
    cleanups.push(() => c.close());
    await c.prepare('ok-1');
    // Fill the filesystem to ~70%: the reserve (40%) is broken.
    const filler = join(fsdir, 'filler');
    const fd = openSync(filler, 'w');
    const chunk = Buffer.alloc(1024 * 1024, 1);
    for (let i = 0; i < 170; i++) writeSync(fd, chunk);
    closeSync(fd);
    const f = await failure(c.prepare('refused'));
    expect(f.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(f.details).toMatch(/not enough free space for a new snapshot: the filesystem under .* free of .* below the reserve/);
    expect(await failure(c.stat('refused'))).toMatchObject({ code: grpc.status.NOT_FOUND }); // nothing half-made
    // The refusal is counted for Prometheus.
    const scrape = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(scrape).toMatch(/^tsblock_low_space_refusals_total\{storage="[^"]+"\} 1$/m);
    // Reads and removals still work while space is low.
    expect((await c.list()).map((i) => i.name)).toEqual(['ok-1']);
    await c.remove('ok-1');
    rmSync(filler);
    await c.prepare('ok-2');
    await c.remove('ok-2');
    await proc.stop();
    expect(leaksUnder(dir).filter((l) => !l.includes('fs.img') && l !== `mount ${fsdir}`)).toEqual([]);
    recordFigures('space', { refusedAtFreePct: 'below 40%', code: 'RESOURCE_EXHAUSTED' });
  }, 120_000);

  it('keeps ENOSPC inside the volume that filled up', async () => {
    const dir = mkdtempSync('/var/tmp/tsblock-enospc-');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    // a killed daemon leaves its store mounted (the next start adopts it): release it after the kill
    cleanups.push(() => releaseStore(join(dir, 'root')));
    const socket = join(dir, 's.sock');
    const log = join(dir, 'serve.log');
    const { proc, state } = await ServerProc.start({ root: join(dir, 'root'), socket, log });
    cleanups.push(() => proc.kill9());
    expect(state, tail(log)).toBe('up');
    const c = new TestClient(socket);
    cleanups.push(() => c.close());
    const full = await c.prepare('full');
    const other = await c.prepare('other');
    const mount = (m: { type: string; source: string; options: string[] }, name: string): string => {
      const t = join(dir, name);
      mkdirSync(t);
      const handle: MountHandle = mountOne(m, t);
      cleanups.push(() => {
        releaseMount(handle);
        rmdirSync(t);
      });
      return t;
    };
    const a = mount(full[0]!, 'a');
    const b = mount(other[0]!, 'b');
    // Fill volume a (64M) until the kernel says ENOSPC.
    let written = 0;
    let code = '';
    const fd = openSync(join(a, 'fill'), 'w');
    try {
      const chunk = Buffer.alloc(1024 * 1024, 7);
      for (;;) {
        written += writeSync(fd, chunk);
        if (written > 256 * 1024 * 1024) break;
      }
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code ?? '';
    } finally {
      closeSync(fd);
    }
    expect(code).toBe('ENOSPC');
    expect(written).toBeLessThan(64 * 1024 * 1024);
    // The neighbour volume, the server and new snapshots are unaffected.
    writeFileSync(join(b, 'still-writable'), 'x'.repeat(4 * 1024 * 1024));
    await c.prepare('after');
    await c.remove('after');
    expect((await c.usage('full')).size).toBeGreaterThan(32 * 1024 * 1024);
    recordFigures('enospc', { filledBytes: written, neighbourWritable: true });
  }, 120_000);
});

/** freePort asks the kernel for an unused TCP port on loopback. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}
