// errno → typed errors happens once (src/sys/errno.ts): the table itself, and
// a scan that no other module classifies kernel errors by errno number,
// by an ENOSPC/EDQUOT/EBUSY code or by message text.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ErrnoError, fromErrno } from '../../../src/sys/errno.js';
import { FailedPreconditionError, NotFoundError, ResourceExhaustedError } from '../../../src/errdefs.js';

const REPO = new URL('../../..', import.meta.url).pathname;

describe('fromErrno', () => {
  it('maps ENOSPC and EDQUOT to ResourceExhaustedError, with the context first and the cause kept', () => {
    const raw = new ErrnoError('write', 28, 'image 3');
    const typed = fromErrno(raw, 'snapshot storage');
    expect(typed).toBeInstanceOf(ResourceExhaustedError);
    expect((typed as Error).message).toBe('snapshot storage: write image 3: ENOSPC (errno 28)');
    expect((typed as Error).cause).toBe(raw);
    expect(fromErrno(Object.assign(new Error('EDQUOT: quota'), { code: 'EDQUOT' }))).toBeInstanceOf(ResourceExhaustedError);
  });

  it('maps EBUSY to FailedPreconditionError and keeps the message without a context', () => {
    const raw = new ErrnoError('ioctl DM_DEV_REMOVE', 16, 'tsblock-x-snap-3');
    const typed = fromErrno(raw);
    expect(typed).toBeInstanceOf(FailedPreconditionError);
    expect((typed as Error).message).toBe(raw.message);
  });

  it('returns typed errors and other errors unchanged', () => {
    const nf = new NotFoundError('x');
    expect(fromErrno(nf, 'ctx')).toBe(nf);
    const eio = Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
    expect(fromErrno(eio, 'ctx')).toBe(eio);
    expect(fromErrno('boom')).toBe('boom');
  });
});

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('no errno classification outside sys/errno.ts', () => {
  it('no module of src/ names ENOSPC or EDQUOT, compares errno numbers or matches kernel message text', () => {
    const offenders: string[] = [];
    for (const file of sources(join(REPO, 'src'))) {
      const rel = relative(REPO, file);
      if (rel === 'src/sys/errno.ts' || rel.startsWith('src/proto/gen/')) continue;
      const code = readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => !/^\s*(\/\/|\*|\/\*)/.test(l))
        .join('\n');
      // A module may still test a code for its own control flow (ENOENT:
      // already gone; EBUSY: leave it mounted, retry), but "out of space" is
      // a typed error and only fromErrno makes it.
      const classify = /['"](ENOSPC|EDQUOT)['"]/;
      if (classify.test(code)) offenders.push(`${rel}: names ${classify.exec(code)![1]}`);
      if (/\berrno\s*===?\s*\d/.test(code)) offenders.push(`${rel}: compares an errno number`);
      if (/message\.(includes|match|startsWith)\(|\.test\([^)]*\.message\)/.test(code)) offenders.push(`${rel}: matches message text`);
    }
    expect(offenders).toEqual([]);
  });
});
