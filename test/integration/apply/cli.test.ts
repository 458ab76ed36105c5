// `tsblock import` and `tsblock diff` as the CLI runs them (offline: no
// daemon holds the root, so the root is opened under its lock), with
// output captured: plain lines for a pipe, JSON with --json.

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importCommand } from '../../../src/cli/commands/import.js';
import { diffCommand } from '../../../src/cli/commands/diff.js';
import { lsCommand } from '../../../src/cli/commands/ls.js';
import { rmCommand } from '../../../src/cli/commands/rm.js';
import type { Io } from '../../../src/cli/common.js';
import { chainIds } from '../../../src/apply/chain.js';
import { buildCorpus, type CorpusLayer } from '../../fixtures/layers/corpus.js';
import { writeLayoutArchive } from '../../fixtures/layers/oci.js';
import { rootReason } from '../../helpers/env.js';
import { leaksUnder } from '../../helpers/leaks.js';

const skip = rootReason !== undefined;
const why = skip ? ` (skipped: ${rootReason})` : '';

function capture(tty = false): Io & { stdout: string; stderr: string } {
  const io = {
    stdout: '',
    stderr: '',
    tty,
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TSBLOCK_'))) as NodeJS.ProcessEnv,
    out: (s: string) => void (io.stdout += s),
    err: (s: string) => void (io.stderr += s),
  };
  return io;
}

describe.skipIf(skip)(`tsblock import / diff verbs${why}`, () => {
  let work: string;
  let corpus: CorpusLayer[];
  let flags: string[];
  beforeAll(async () => {
    work = fs.mkdtempSync('/var/tmp/tsblock-applycli-');
    corpus = await buildCorpus();
    flags = ['--root', path.join(work, 'root'), '--socket', path.join(work, 'none.sock'), '--backend', 'blockfile', '--base-size', '256M'];
  });
  afterAll(() => {
    const leaks = work ? leaksUnder(work) : [];
    if (work) fs.rmSync(work, { recursive: true, force: true });
    expect(leaks).toEqual([]);
  });

  it('imports an archive (plain lines, then JSON with everything present) and diffs the top layer', async () => {
    const archive = path.join(work, 'img.tar');
    await writeLayoutArchive(archive, 'example.com/cli:1', corpus.map((l) => ({ blob: l.blob, mediaType: l.mediaType, diffId: l.diffId })));
    const chain = chainIds(corpus.map((l) => l.diffId));
    const io = capture();
    expect(await importCommand([archive, ...flags], io)).toBe(0);
    expect(io.stdout).toContain(`layer 1/3 ${chain[0]} applied`);
    expect(io.stdout).toContain(`example.com/cli:1: 3 layers, chain ${chain[2]}`);
    expect(io.stdout).toMatch(/imported: 3 applied .* 0 already present/);

    const tty = capture(true);
    expect(await importCommand([archive, ...flags], tty)).toBe(0);
    expect(tty.stderr).toMatch(/\[#+\] example\.com\/cli:1 layer 3\/3 [0-9a-f]{12} present/);

    const js = capture();
    expect(await importCommand([archive, '--json', ...flags], js)).toBe(0);
    expect(JSON.parse(js.stdout)).toMatchObject({ applied: 0, skipped: 3, images: [{ name: 'example.com/cli:1', chainId: chain[2], layers: 3 }] });

    const d = capture();
    const out = path.join(work, 'top.tar.zst');
    expect(await diffCommand([chain[2]!, '-o', out, '--json', ...flags], d)).toBe(0);
    const res = JSON.parse(d.stdout);
    expect(res.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    expect(fs.statSync(out).size).toBe(res.size);
    await expect(diffCommand(['sha256:nope', '-o', out, ...flags], capture())).rejects.toThrow(/not found/);

    // The seeds carry tsblock.io/seed (containerd's GC cannot remove them);
    // `tsblock rm` is the operator's way to drop them, top first.
    const ls = capture();
    expect(await lsCommand(['--json', ...flags], ls)).toBe(0);
    const seeds = JSON.parse(ls.stdout) as { key: string }[];
    expect(seeds.map((e) => e.key).sort()).toEqual([...chain].sort());
    const rm = capture();
    expect(await rmCommand([chain[2]!, chain[1]!, chain[0]!, ...flags], rm)).toBe(0);
    expect(rm.stdout).toBe(`removed ${chain[2]}\nremoved ${chain[1]}\nremoved ${chain[0]}\n`);
    const after = capture();
    expect(await lsCommand(['--json', ...flags], after)).toBe(0);
    expect(JSON.parse(after.stdout)).toEqual([]);
  });
});
