import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errdefs.js';
import { parseFilter, parseFilters } from '../../src/snapshots/filters.js';
import { Kind, type Info } from '../../src/snapshots/snapshotter.js';

function info(name: string, kind: Kind, parent = '', labels: Record<string, string> = {}): Info {
  const t = { seconds: 0, nanos: 0 };
  return { name, kind, parent, labels, created: t, updated: t };
}

// The fixture of containerd's testsuite checkWalk, reproduced as data.
const root = { 'containerd.io/gc.root': 'check-walk' };
const walkSet: Info[] = [
  info('p', Kind.Committed, '', { ...root }),
  info('a-np-wl', Kind.Active, '', { ...root, l: '1' }),
  info('a-wl', Kind.Active, 'p', { ...root, l: '2' }),
  info('v-np', Kind.View, '', { ...root }),
  info('v-wl', Kind.View, 'p', { ...root, l: '3' }),
  info('c', Kind.Committed, 'p', { ...root }),
  info('other', Kind.Active, '', { 'containerd.io/gc.root': 'someone-else' }),
];

function names(filters: string[]): string[] {
  const f = parseFilters(filters);
  return walkSet.filter(f).map((i) => i.name).sort();
}

describe('parseFilters: the forms containerd’s conformance suite sends', () => {
  it('quoted label key with ==', () => {
    expect(names(['labels."containerd.io/gc.root"==check-walk'])).toEqual(['a-np-wl', 'a-wl', 'c', 'p', 'v-np', 'v-wl']);
  });

  it('kind==active|view|committed AND a label', () => {
    const lbl = 'labels."containerd.io/gc.root"==check-walk';
    expect(names([`kind==active,${lbl}`])).toEqual(['a-np-wl', 'a-wl']);
    expect(names([`kind==view,${lbl}`])).toEqual(['v-np', 'v-wl']);
    expect(names([`kind==committed,${lbl}`])).toEqual(['c', 'p']);
  });

  it('several strings are OR-ed', () => {
    expect(names(['name==p', 'name==a-np-wl'])).toEqual(['a-np-wl', 'p']);
  });

  it('name AND bare label presence', () => {
    expect(names(['name==a-wl,labels.l'])).toEqual(['a-wl']);
    expect(names(['name==p,labels.l'])).toEqual([]);
  });

  it('parent==p', () => {
    expect(names(['parent==p'])).toEqual(['a-wl', 'c', 'v-wl']);
  });

  it('parent!="" means has a parent', () => {
    expect(names(['parent!="",labels."containerd.io/gc.root"==check-walk'])).toEqual(['a-wl', 'c', 'v-wl']);
  });

  it('bare labels.l and labels.l==2', () => {
    expect(names(['labels.l'])).toEqual(['a-np-wl', 'a-wl', 'v-wl']);
    expect(names(['labels.l==2'])).toEqual(['a-wl']);
  });
});

describe('parseFilters: semantics', () => {
  const sn = info('k', Kind.Active, '', { 'a.b': 'dotted', x: '', q: 'he said "hi"' });

  it('matches everything with no filters or an empty filter', () => {
    expect(parseFilters([])(sn)).toBe(true);
    expect(parseFilters([''])(sn)).toBe(true);
    expect(parseFilters(['name==nope', ''])(sn)).toBe(true);
  });

  it('joins a dotted label path with "."', () => {
    expect(parseFilter('labels.a.b==dotted')(sn)).toBe(true);
    expect(parseFilter('labels."a.b"==dotted')(sn)).toBe(true);
    expect(parseFilter('labels.a')(sn)).toBe(false);
  });

  it('treats a present empty label as present', () => {
    expect(parseFilter('labels.x')(sn)).toBe(true);
    expect(parseFilter('labels.x==""')(sn)).toBe(true);
    expect(parseFilter('labels.missing==""')(sn)).toBe(false);
  });

  it('!= is true for absent fields', () => {
    expect(parseFilter('labels.missing!=v')(sn)).toBe(true);
    expect(parseFilter('labels.x!=v')(sn)).toBe(true);
    expect(parseFilter('name!=k')(sn)).toBe(false);
  });

  it('bare name and parent are always present (containerd’s adaptor)', () => {
    expect(parseFilter('parent')(sn)).toBe(true);
    expect(parseFilter('name')(sn)).toBe(true);
  });

  it('unknown fields and unknown kind are absent', () => {
    expect(parseFilter('size')(sn)).toBe(false);
    expect(parseFilter('size!=1')(sn)).toBe(true);
    expect(parseFilter('kind')(info('u', Kind.Unknown))).toBe(false);
    expect(parseFilter('kind')(sn)).toBe(true);
  });

  it('labels with no labels at all is absent', () => {
    expect(parseFilter('labels.l')(info('n', Kind.Active))).toBe(false);
  });

  it('does not match inherited object properties as labels', () => {
    expect(parseFilter('labels.toString')(sn)).toBe(false);
    expect(parseFilter('labels.constructor')(sn)).toBe(false);
  });

  it('comma is AND', () => {
    expect(parseFilter('name==k,kind==active')(sn)).toBe(true);
    expect(parseFilter('name==k,kind==view')(sn)).toBe(false);
  });

  it('quoted values with escapes', () => {
    expect(parseFilter('labels.q=="he said \\"hi\\""')(sn)).toBe(true);
    const tab = info('t', Kind.Active, '', { v: 'a\tb\\c\u00e9\u{1F600}A' });
    expect(parseFilter('labels.v=="a\\tb\\\\c\\u00e9\\U0001F600\\x41"')(tab)).toBe(true);
    expect(parseFilter('labels.v=="a\\tb\\\\c\\u00e9\\U0001F600\\101"')(tab)).toBe(true);
  });

  it('bare values may hold punctuation but stop at comma and blanks', () => {
    const s = info('sha256:abc/def=1', Kind.Committed);
    expect(parseFilter('name==sha256:abc/def=1')(s)).toBe(true);
    expect(parseFilter('name==sha256:abc/def=1,kind==committed')(s)).toBe(true);
  });

  it('allows blanks around operators and commas', () => {
    expect(parseFilter(' name == k , kind==active ')(sn)).toBe(true);
  });
});

describe('parseFilters: regexp', () => {
  const sn = info('layer-12', Kind.Committed, 'layer-11', { 'containerd.io/snapshot.ref': 'sha256:ab12' });

  it('matches a bare pattern as an unanchored search', () => {
    expect(parseFilter('name~=yer-1')(sn)).toBe(true);
    expect(parseFilter('name~=^layer-[0-9]+$')(sn)).toBe(true);
    expect(parseFilter('name~=^yer')(sn)).toBe(false);
  });

  it('accepts /…/, |…| and "…" quoting', () => {
    expect(parseFilter('name~=/^layer-1[0-9]$/')(sn)).toBe(true);
    expect(parseFilter('name~=|^layer-1[0-9]$|')(sn)).toBe(true);
    expect(parseFilter('name~="^layer-(11|12)$"')(sn)).toBe(true);
    expect(parseFilter('name~="^layer-(11|13)$"')(sn)).toBe(false);
    // A comma inside quotes is part of the pattern, not an AND.
    expect(parseFilter('name~=/^(layer-12|x,y)$/')(sn)).toBe(true);
  });

  it('handles an escaped delimiter inside /…/', () => {
    const s = info('a/b', Kind.Active);
    expect(parseFilter('name~=/^a\\/b$/')(s)).toBe(true);
  });

  it('translates a leading (?i) flag group', () => {
    expect(parseFilter('name~=(?i)^LAYER')(sn)).toBe(true);
    expect(parseFilter('name~=^LAYER')(sn)).toBe(false);
  });

  it('searches the empty string for absent fields', () => {
    expect(parseFilter('labels.none~=^$')(sn)).toBe(true);
    expect(parseFilter('labels."containerd.io/snapshot.ref"~=^sha256:')(sn)).toBe(true);
  });

  it('rejects a regexp that does not compile', () => {
    expect(() => parseFilter('name~=(unclosed')).toThrow(InvalidArgumentError);
    expect(() => parseFilter('name~=(unclosed')).toThrow(/bad regexp/);
  });
});

describe('parseFilters: syntax errors are InvalidArgumentError with a position', () => {
  const bad: Array<[string, RegExp]> = [
    ['name===x', /position 4: unsupported operator "==="/],
    ['name=x', /position 4: unsupported operator "="/],
    ['name==', /position 6: expected a value, got end of input/],
    ['name==,kind==view', /position 6: expected a value/],
    ['==x', /position 0: expected a field name/],
    [',name==x', /position 0: expected a field name/],
    ['name==x,', /position 8: expected a field name, got end of input/],
    ['labels.', /position 7: expected a field name/],
    ['labels."unterminated==x', /position 7: quoted literal not terminated/],
    ['name=="x"y', /position 9: unexpected input "y"/],
    ['name==/x/', /invalid quote \//],
    ['labels./x/==y', /invalid quote \/ in a field name/],
    ['name=="\\q"', /position 7: illegal escape sequence \\q/],
    ['name=="\\xZZ"', /illegal numeric escape sequence/],
    ['name=="\\777"', /illegal octal escape sequence/],
    ['name==".\\/"', /illegal escape sequence/],
    ['name name', /position 5: expected an operator/],
    ['name>x', /expected an operator/],
    ['name~=|a|b|', /position 9: unexpected input "b"/],
  ];

  it.each(bad)('%s', (input, message) => {
    let caught: unknown;
    try {
      parseFilters(['name==ok', input]);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError);
    expect((caught as Error).message).toMatch(message);
    expect((caught as Error).message).toContain(JSON.stringify(input));
  });
});
