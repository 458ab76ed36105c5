// helpers for applier integration tests: a root directory inside a temp dir
// with an "outside" sibling full of sentinels, and a fingerprint of
// everything outside root so a test can prove a hostile layer touched nothing.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applyLayer, type ApplyOptions, type ApplyResult } from '../../../src/apply/applier.js';
import { chunked } from '../../fixtures/layers/build.js';

/** Sandbox is a temp dir holding root/ and outside/ (with sentinel files). */
export interface Sandbox {
  base: string;
  root: string;
  outside: string;
  /** fingerprint lists every path outside root with type, mode and content hash. */
  fingerprint(): string[];
  cleanup(): void;
}

/** makeSandbox creates base/{root,outside} with sentinels, under dir (default os.tmpdir()). */
export function makeSandbox(dir = os.tmpdir()): Sandbox {
  const base = fs.mkdtempSync(path.join(dir, 'tsblock-apply-'));
  const root = path.join(base, 'root');
  const outside = path.join(base, 'outside');
  fs.mkdirSync(root);
  fs.mkdirSync(path.join(outside, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(outside, 'sentinel'), 'untouched');
  fs.writeFileSync(path.join(outside, 'etc', 'passwd'), 'root:x:0:0\n');
  fs.writeFileSync(path.join(base, 'sibling'), 'untouched');
  const fingerprint = (): string[] => {
    const out: string[] = [];
    const walk = (p: string): void => {
      const st = fs.lstatSync(p);
      let extra = '';
      if (st.isFile()) extra = fs.readFileSync(p, 'utf8');
      if (st.isSymbolicLink()) extra = fs.readlinkSync(p);
      out.push(`${path.relative(base, p)} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.mtimeMs} ${extra}`);
      if (st.isDirectory()) for (const n of fs.readdirSync(p).sort()) if (path.join(p, n) !== root) walk(path.join(p, n));
    };
    walk(base);
    return out;
  };
  return { base, root, outside, fingerprint, cleanup: () => fs.rmSync(base, { recursive: true, force: true }) };
}

/** applyBuf applies an in-memory blob, streamed in odd-sized chunks. */
export function applyBuf(root: string, blob: Buffer, opts: ApplyOptions = {}, chunk = 7919): Promise<ApplyResult> {
  return applyLayer(root, chunked(blob, chunk), opts);
}

/** isRoot tells whether the tests run with root privileges. */
export const isRoot = process.getuid?.() === 0;
