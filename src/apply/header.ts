// header turns tar-stream's entry headers into EntryMeta, the applier's own
// view of an entry: type, cleaned numbers, nanosecond times and xattrs.
//
// Why a hook into tar-stream: its PAX decoder turns every record value into a
// UTF-8 string, which destroys binary xattr values (security.capability holds
// raw little-endian bitmasks; any byte >= 0x80 becomes U+FFFD). The hook keeps
// the raw PAX bytes of each entry next to tar-stream's own decoding, scoped to
// one extract instance; tar-stream still applies path/linkpath/size itself.

import type { Extract, Header } from 'tar-stream';

/** Headers is tar-stream's header as it really arrives (type may be null for unknown typeflags). */
type Headers = Omit<Header, 'type'> & { type: Header['type'] | string | null };
import { InternalError, InvalidArgumentError } from '../errdefs.js';
import type { Timespec } from '../sys/nodes.js';

/** PaxRecords maps PAX keys to their raw value bytes. */
export type PaxRecords = Map<string, Buffer>;

const RAW = Symbol('tsblock.rawPax');

type HeaderWithRaw = Headers & { [RAW]?: PaxRecords; pax?: Record<string, string> | null };

/** parsePaxRecords decodes "<len> <key>=<value>\n" records, keeping values as bytes. */
export function parsePaxRecords(buf: Buffer): PaxRecords {
  const out: PaxRecords = new Map();
  let off = 0;
  while (off < buf.length) {
    // Trailing NUL padding ends the record list.
    if (buf[off] === 0) break;
    const sp = buf.indexOf(0x20, off);
    if (sp < 0) throw new InvalidArgumentError('malformed layer: PAX record without a length');
    const lenText = buf.toString('latin1', off, sp);
    const len = Number(lenText);
    if (!/^[0-9]+$/.test(lenText) || len <= sp - off + 1 || off + len > buf.length) {
      throw new InvalidArgumentError(`malformed layer: bad PAX record length "${lenText.slice(0, 20)}"`);
    }
    const rec = buf.subarray(sp + 1, off + len);
    if (rec[rec.length - 1] !== 0x0a) throw new InvalidArgumentError('malformed layer: PAX record not newline-terminated');
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new InvalidArgumentError('malformed layer: PAX record without a key');
    out.set(rec.toString('utf8', 0, eq), Buffer.from(rec.subarray(eq + 1, rec.length - 1)));
    off += len;
  }
  return out;
}

interface ExtractInternals {
  _header: HeaderWithRaw | null;
  _decodeLongHeader(buf: Buffer): void;
  _applyLongHeaders(): void;
}

/**
 * attachRawPax hooks one tar-stream extract so each entry header carries the
 * raw PAX records that applied to it (local over global); read them with
 * rawPax(header). Throws InternalError if tar-stream's internals changed, so
 * an upgrade cannot silently drop xattrs.
 */
export function attachRawPax(extract: Extract): void {
  const ex = extract as unknown as ExtractInternals;
  const decode = ex._decodeLongHeader;
  const apply = ex._applyLongHeaders;
  if (typeof decode !== 'function' || typeof apply !== 'function') {
    throw new InternalError('tar-stream internals changed: cannot read raw PAX records');
  }
  let global: PaxRecords | null = null;
  let local: PaxRecords | null = null;
  ex._decodeLongHeader = function (this: ExtractInternals, buf: Buffer): void {
    const type = this._header?.type;
    if (type === 'pax-global-header') global = parsePaxRecords(buf);
    if (type === 'pax-header') {
      const recs = parsePaxRecords(buf);
      local = global ? new Map([...global, ...recs]) : recs;
    }
    decode.call(this, buf);
  };
  ex._applyLongHeaders = function (this: ExtractInternals): void {
    apply.call(this);
    if (this._header) this._header[RAW] = local ?? global ?? undefined;
    local = null;
  };
}

/** rawPax returns the raw PAX records attached by attachRawPax (empty map if none). */
export function rawPax(header: Header | Headers): PaxRecords {
  return (header as HeaderWithRaw)[RAW] ?? new Map();
}

/** EntryType is the kind of filesystem object an entry creates. */
export type EntryType = 'file' | 'directory' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';

/** EntryMeta is everything the writers need from one tar entry header. */
export interface EntryMeta {
  type: EntryType;
  name: string;
  linkname: string;
  size: number;
  /** mode is the permission bits incl. setuid/setgid/sticky (no type bits). */
  mode: number;
  uid: number;
  gid: number;
  atime: Timespec;
  mtime: Timespec;
  devmajor: number;
  devminor: number;
  /** xattrs are SCHILY.xattr.* records: [name, raw value]. */
  xattrs: Array<[string, Buffer]>;
}

const XATTR_PREFIX = 'SCHILY.xattr.';

/** parsePaxTime parses "<sec>[.<frac>]" into a Timespec. */
export function parsePaxTime(text: string): Timespec {
  const m = /^(-?)([0-9]+)(?:\.([0-9]*))?$/.exec(text);
  if (!m) throw new InvalidArgumentError(`malformed layer: bad PAX time "${text.slice(0, 40)}"`);
  const sec = BigInt(m[2]!);
  const nsec = Number(((m[3] ?? '') + '000000000').slice(0, 9));
  if (m[1] !== '-') return { sec, nsec };
  // -1.25 is 1.25 s before the epoch: sec -2, nsec 750000000.
  return nsec === 0 ? { sec: -sec, nsec: 0 } : { sec: -sec - 1n, nsec: 1e9 - nsec };
}

function paxInt(recs: PaxRecords, key: string, fallback: number | undefined): number {
  const raw = recs.get(key);
  if (raw === undefined) return fallback ?? 0;
  const text = raw.toString('latin1');
  if (!/^[0-9]+$/.test(text)) throw new InvalidArgumentError(`malformed layer: bad PAX ${key} "${text.slice(0, 40)}"`);
  return Number(text);
}

const TYPES: Record<string, EntryType> = {
  file: 'file',
  'contiguous-file': 'file',
  directory: 'directory',
  symlink: 'symlink',
  link: 'link',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

/** toEntryMeta validates a header and converts it; unsupported types throw InvalidArgumentError. */
export function toEntryMeta(header: Header): EntryMeta {
  return toMeta(header as Headers);
}

function toMeta(h: Headers): EntryMeta {
  const recs = rawPax(h);
  const type = h.type ? TYPES[h.type] : undefined;
  if (!type) {
    throw new InvalidArgumentError(`malformed layer: unsupported tar entry type ${JSON.stringify(h.type ?? null)} for "${h.name}"`);
  }
  for (const key of recs.keys()) {
    // GNU PAX sparse files store a map in the data; writing it verbatim
    // would produce a corrupt file, so refuse clearly.
    if (key.startsWith('GNU.sparse.')) throw new InvalidArgumentError(`malformed layer: GNU sparse entry "${h.name}" is not supported`);
  }
  const secs = Math.floor((h.mtime?.getTime() ?? 0) / 1000);
  const mtimeRaw = recs.get('mtime');
  const mtime = mtimeRaw ? parsePaxTime(mtimeRaw.toString('latin1')) : { sec: BigInt(secs), nsec: 0 };
  const atimeRaw = recs.get('atime');
  const atime = atimeRaw ? parsePaxTime(atimeRaw.toString('latin1')) : mtime;
  const xattrs: Array<[string, Buffer]> = [];
  for (const [key, value] of recs) {
    if (key.startsWith(XATTR_PREFIX) && key.length > XATTR_PREFIX.length) xattrs.push([key.slice(XATTR_PREFIX.length), value]);
  }
  const size = h.size ?? 0;
  if (!Number.isSafeInteger(size) || size < 0) throw new InvalidArgumentError(`malformed layer: bad size for "${h.name}"`);
  return {
    type,
    name: h.name,
    linkname: h.linkname ?? '',
    size,
    mode: (h.mode ?? 0) & 0o7777,
    uid: paxInt(recs, 'uid', h.uid),
    gid: paxInt(recs, 'gid', h.gid),
    atime,
    mtime,
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
    xattrs,
  };
}
