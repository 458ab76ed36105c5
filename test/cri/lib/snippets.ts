/**
 * snippets reads the config snippets and commands the tests run out of the
 * docs themselves, so the docs cannot drift from what is tested.
 *
 * In a markdown file, a fenced block is named by an HTML comment on the line
 * right before its opening fence: `<!-- snippet: NAME -->`. `snippet(file,
 * name)` returns the block's text; `snippetNames(file)` lists the names.
 * `mergeToml(...texts)` parses TOML texts (smol-toml) and deep-merges them
 * into one document (later wins; a key set twice to different scalars is an
 * error, since containerd would see only one).
 */

import fs from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'smol-toml';
import { REPO } from './tools.js';

export const DEFAULT_SOCKET = '/run/tsblock/tsblock.sock';

/** snippets returns every named fenced block of a markdown file (repo-relative path). */
export function snippets(file: string): Map<string, { lang: string; text: string }> {
  const lines = fs.readFileSync(path.join(REPO, file), 'utf8').split('\n');
  const out = new Map<string, { lang: string; text: string }>();
  for (let i = 0; i < lines.length; i++) {
    const m = /^<!--\s*snippet:\s*([\w.-]+)\s*-->\s*$/.exec(lines[i]!);
    if (!m) continue;
    const fence = /^(```+)(\w*)\s*$/.exec(lines[i + 1] ?? '');
    if (!fence) throw new Error(`${file}:${i + 1}: snippet ${m[1]} is not followed by a fenced block`);
    const body: string[] = [];
    let j = i + 2;
    for (; j < lines.length && lines[j] !== fence[1]; j++) body.push(lines[j]!);
    if (j >= lines.length) throw new Error(`${file}:${i + 2}: snippet ${m[1]} never closes`);
    if (out.has(m[1]!)) throw new Error(`${file}: snippet ${m[1]} named twice`);
    out.set(m[1]!, { lang: fence[2] ?? '', text: body.join('\n') + '\n' });
  }
  return out;
}

export function snippet(file: string, name: string): string {
  const s = snippets(file).get(name);
  if (!s) throw new Error(`${file}: no snippet named ${name}`);
  return s.text;
}

/** repoFile reads a repo file (repo-relative path). */
export function repoFile(file: string): string {
  return fs.readFileSync(path.join(REPO, file), 'utf8');
}

/** withSocket points every tsblock socket address of a snippet at socket. */
export function withSocket(text: string, socket: string): string {
  return text.split(DEFAULT_SOCKET).join(socket);
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

function merge(dst: Obj, src: Obj, at: string): void {
  for (const [k, v] of Object.entries(src)) {
    const here = at ? `${at}.${k}` : k;
    const cur = dst[k];
    if (isObj(cur) && isObj(v)) merge(cur, v, here);
    else if (Array.isArray(cur) && Array.isArray(v)) dst[k] = [...cur, ...v];
    else if (cur !== undefined && JSON.stringify(cur) !== JSON.stringify(v)) throw new Error(`mergeToml: ${here} set twice (${JSON.stringify(cur)} vs ${JSON.stringify(v)})`);
    else dst[k] = v;
  }
}

/** mergeToml parses and deep-merges TOML texts into one TOML document. */
export function mergeToml(...texts: string[]): string {
  const out: Obj = {};
  for (const t of texts) merge(out, parse(t) as Obj, '');
  return stringify(out) + '\n';
}

/** tomlOf parses one TOML text (throws with the parser's message). */
export function tomlOf(text: string): Obj {
  return parse(text) as Obj;
}
