// filters implements containerd's filter language as the snapshots service
// uses it (containerd 1.6 filters/ + the snapshot adaptor in
// snapshots/storage/bolt.go). A List request carries several filter strings;
// a snapshot is listed when ANY of them matches. Within one string the
// comma-separated selectors must ALL match:
//
//   selectors := selector ("," selector)*
//   selector  := fieldpath [operator value]      (no operator: "is present")
//   fieldpath := field ("." field)*
//   field     := "quoted" | [A-Za-z0-9_]+
//   operator  := "==" | "!=" | "~="             (~= is a regexp search)
//   value     := quoted | run of anything but "," and white space
//   quoted    := Go string syntax in "…"; for ~= also /…/ or |…|
//
// Field values, as containerd's snapshot adaptor defines them:
//   name, parent  always present (parent may be ""), so `parent!=""` means
//                 "has a parent" and a bare `parent` matches everything;
//   kind          "active" | "view" | "committed" (absent for unknown);
//   labels.<k>    present when label <k> exists; the path after "labels" is
//                 joined with "." so labels.a.b is label "a.b".
// `!=` and `~=` look at the value even when it is absent (as "").
//
// Deviations, on purpose: white space may surround operators and commas
// anywhere (containerd rejects trailing blanks), and a regexp that does not
// compile is an InvalidArgumentError at parse time (containerd silently
// matches nothing). Regexps run on JavaScript's engine; a leading (?i), (?m)
// or (?s) flag group, common in Go (RE2) patterns, is translated.

import { InvalidArgumentError } from '../errdefs.js';
import { Kind, type Info, type WalkFilter } from './snapshotter.js';

type Operator = 'present' | '==' | '!=' | '~=';

interface Selector {
  fieldpath: string[];
  op: Operator;
  value: string;
  re?: RegExp;
}

/**
 * parseFilters compiles containerd filter strings into one predicate: true
 * when any string matches. No strings, or any empty string, match everything.
 * Throws InvalidArgumentError naming the filter and the position on bad syntax.
 */
export function parseFilters(filters: readonly string[]): WalkFilter {
  if (filters.length === 0) return () => true;
  const alternatives: Selector[][] = [];
  for (const f of filters) {
    // An empty string is containerd's "always"; one always makes the OR true.
    if (f === '') return () => true;
    alternatives.push(new Parser(f).parse());
  }
  return (info) => alternatives.some((all) => all.every((sel) => matches(sel, info)));
}

/** parseFilter compiles a single filter string (comma = AND). */
export function parseFilter(filter: string): WalkFilter {
  return parseFilters([filter]);
}

function matches(sel: Selector, info: Info): boolean {
  const [value, present] = field(sel.fieldpath, info);
  switch (sel.op) {
    case 'present':
      return present;
    case '==':
      return present && value === sel.value;
    case '!=':
      return value !== sel.value;
    case '~=':
      return sel.re!.test(value);
  }
}

/** field is containerd's snapshot adaptor: the value at a field path and whether it is present. */
function field(fieldpath: string[], info: Info): [string, boolean] {
  switch (fieldpath[0]) {
    case 'kind':
      switch (info.kind) {
        case Kind.Active:
          return ['active', true];
        case Kind.View:
          return ['view', true];
        case Kind.Committed:
          return ['committed', true];
        default:
          return ['', false];
      }
    case 'name':
      return [info.name, true];
    case 'parent':
      return [info.parent, true];
    case 'labels': {
      const key = fieldpath.slice(1).join('.');
      if (!Object.prototype.hasOwnProperty.call(info.labels, key)) return ['', false];
      return [info.labels[key]!, true];
    }
    default:
      return ['', false];
  }
}

const isFieldChar = (c: string): boolean => /^[A-Za-z0-9_]$/.test(c);
const isSpace = (c: string): boolean => /^\s$/u.test(c);

/** Parser is a recursive-descent parser over one filter string; pos indexes UTF-16 units. */
class Parser {
  private pos = 0;

  constructor(private readonly input: string) {}

  parse(): Selector[] {
    const out = [this.selector()];
    for (;;) {
      this.skipSpace();
      if (this.atEnd()) return out;
      if (this.peek() !== ',') this.fail(`unexpected input ${JSON.stringify(this.peek())}`);
      this.pos++;
      out.push(this.selector());
    }
  }

  private selector(): Selector {
    this.skipSpace();
    const fieldpath = this.fieldpath();
    this.skipSpace();
    if (this.atEnd() || this.peek() === ',') return { fieldpath, op: 'present', value: '' };
    const op = this.operator();
    this.skipSpace();
    const value = this.value(op === '~=');
    if (op !== '~=') return { fieldpath, op, value };
    return { fieldpath, op, value, re: this.regexp(value) };
  }

  private fieldpath(): string[] {
    const path = [this.field()];
    while (this.peek() === '.') {
      this.pos++;
      path.push(this.field());
    }
    return path;
  }

  private field(): string {
    const c = this.peek();
    if (c === '"') return this.quoted();
    if (c === '/' || c === '|') this.fail(`invalid quote ${c} in a field name (only "…" quotes fields)`);
    if (c === undefined || !isFieldChar(c)) {
      this.fail(c === undefined ? 'expected a field name, got end of input' : `expected a field name or "quoted" field, got ${JSON.stringify(c)}`);
    }
    const start = this.pos;
    while (this.pos < this.input.length && isFieldChar(this.input[this.pos]!)) this.pos++;
    return this.input.slice(start, this.pos);
  }

  private operator(): Operator {
    const start = this.pos;
    while ('=!~'.includes(this.peek() ?? 'x')) this.pos++;
    const op = this.input.slice(start, this.pos);
    if (op === '==' || op === '!=' || op === '~=') return op;
    this.pos = start;
    if (op === '') this.fail(`expected an operator ("==", "!=" or "~="), got ${JSON.stringify(this.peek())}`);
    this.fail(`unsupported operator ${JSON.stringify(op)}`);
  }

  private value(allowRegexpQuotes: boolean): string {
    const c = this.peek();
    if (c === '"' || c === '/' || c === '|') {
      if (c !== '"' && !allowRegexpQuotes) this.fail(`invalid quote ${c}: /…/ and |…| quote only ~= values`);
      return this.quoted();
    }
    if (c === undefined) this.fail('expected a value, got end of input');
    if (c === ',' || c === '.' || '=!~'.includes(c)) this.fail(`expected a value or "quoted" value, got ${JSON.stringify(c)}`);
    const start = this.pos;
    while (this.pos < this.input.length && this.input[this.pos] !== ',' && !isSpace(this.input[this.pos]!)) this.pos++;
    return this.input.slice(start, this.pos);
  }

  /** quoted reads a Go-syntax quoted string whose delimiter is the current character. */
  private quoted(): string {
    const start = this.pos;
    const q = this.input[this.pos++]!;
    let out = '';
    for (;;) {
      const c = this.input[this.pos];
      if (c === undefined || c === '\n') {
        this.pos = start;
        this.fail('quoted literal not terminated');
      }
      this.pos++;
      if (c === q) return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      out += this.escape(q);
    }
  }

  private escape(q: string): string {
    const at = this.pos - 1;
    const c = this.input[this.pos++];
    const simple: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };
    if (c !== undefined && c in simple) return simple[c]!;
    if (c === q) return q;
    const hex = (n: number, max: number): string => {
      const digits = this.input.slice(this.pos, this.pos + n);
      if (!new RegExp(`^[0-9A-Fa-f]{${n}}$`).test(digits)) this.failAt(at, 'illegal numeric escape sequence');
      const v = parseInt(digits, 16);
      if (v > max || (v >= 0xd800 && v <= 0xdfff && n > 2)) this.failAt(at, 'escape sequence is not a valid code point');
      this.pos += n;
      return String.fromCodePoint(v);
    };
    switch (c) {
      case 'x':
        return hex(2, 0xff);
      case 'u':
        return hex(4, 0xffff);
      case 'U':
        return hex(8, 0x10ffff);
      case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': {
        const digits = this.input.slice(this.pos - 1, this.pos + 2);
        if (!/^[0-7]{3}$/.test(digits) || parseInt(digits, 8) > 255) this.failAt(at, 'illegal octal escape sequence');
        this.pos += 2;
        return String.fromCharCode(parseInt(digits, 8));
      }
      default:
        this.failAt(at, `illegal escape sequence \\${c ?? ''}`);
    }
  }

  private regexp(source: string): RegExp {
    let pattern = source;
    let flags = '';
    const m = /^\(\?([a-zA-Z]+)\)/.exec(pattern);
    if (m && /^[ims]+$/.test(m[1]!)) {
      flags = [...new Set(m[1]!)].join('');
      pattern = pattern.slice(m[0].length);
    }
    try {
      return new RegExp(pattern, flags);
    } catch (err) {
      throw new InvalidArgumentError(`invalid filter ${JSON.stringify(this.input)}: bad regexp ${JSON.stringify(source)}: ${(err as Error).message}`);
    }
  }

  private peek(): string | undefined {
    return this.input[this.pos];
  }

  private atEnd(): boolean {
    return this.pos >= this.input.length;
  }

  private skipSpace(): void {
    while (this.pos < this.input.length && isSpace(this.input[this.pos]!)) this.pos++;
  }

  private fail(msg: string): never {
    this.failAt(this.pos, msg);
  }

  private failAt(pos: number, msg: string): never {
    throw new InvalidArgumentError(`invalid filter ${JSON.stringify(this.input)}: at position ${pos}: ${msg}`);
  }
}
