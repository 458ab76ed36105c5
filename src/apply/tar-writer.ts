// tar-writer encodes layer tar entries: a ustar header, preceded by a PAX
// extended header ('x') when a field does not fit ustar (long or non-ASCII
// names and link targets, big ids or sizes) or the entry carries xattrs
// (SCHILY.xattr.<name>, values kept as raw bytes: security.capability is
// binary). Written by hand rather than with tar-stream's pack because the
// latter encodes PAX values as UTF-8 text.

/** TarHeader is what encodeHeader needs for one entry. */
export interface TarHeader {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** mtime in whole seconds since the epoch. */
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Map<string, Buffer>;
}

const TYPEFLAG: Record<TarHeader['type'], string> = { file: '0', link: '1', symlink: '2', char: '3', block: '4', directory: '5', fifo: '6' };

/** BLOCK is tar's record size. */
export const BLOCK = 512;

function octal(buf: Buffer, off: number, len: number, v: number): boolean {
  const s = v.toString(8);
  if (s.length > len - 1) return false;
  buf.write(s.padStart(len - 1, '0') + '\0', off, 'latin1');
  return true;
}

function ascii(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s);
}

/** paxRecord encodes "<len> key=value\n" with the value as bytes. */
export function paxRecord(key: string, value: Buffer | string): Buffer {
  const v = typeof value === 'string' ? Buffer.from(value) : value;
  const body = Buffer.concat([Buffer.from(` ${key}=`), v, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function ustar(h: Omit<TarHeader, 'xattrs'>, flag: string): { block: Buffer; overflow: Buffer[] } {
  const b = Buffer.alloc(BLOCK);
  const overflow: Buffer[] = [];
  if (Buffer.byteLength(h.name) <= 100 && ascii(h.name)) b.write(h.name, 0, 'latin1');
  else {
    overflow.push(paxRecord('path', h.name));
    b.write(h.name.replace(/[^\x20-\x7e]/g, '_').slice(-99), 0, 'latin1');
  }
  octal(b, 100, 8, h.mode & 0o7777);
  if (!octal(b, 108, 8, h.uid)) (overflow.push(paxRecord('uid', String(h.uid))), octal(b, 108, 8, 0));
  if (!octal(b, 116, 8, h.gid)) (overflow.push(paxRecord('gid', String(h.gid))), octal(b, 116, 8, 0));
  if (!octal(b, 124, 12, h.size)) (overflow.push(paxRecord('size', String(h.size))), octal(b, 124, 12, 0));
  octal(b, 136, 12, Math.max(0, Math.floor(h.mtime)));
  b.write(flag, 156, 'latin1');
  const ln = h.linkname ?? '';
  if (Buffer.byteLength(ln) <= 100 && ascii(ln)) b.write(ln, 157, 'latin1');
  else {
    overflow.push(paxRecord('linkpath', ln));
    b.write(ln.replace(/[^\x20-\x7e]/g, '_').slice(0, 100), 157, 'latin1');
  }
  b.write('ustar\0', 257, 'latin1');
  b.write('00', 263, 'latin1');
  octal(b, 329, 8, h.devmajor ?? 0);
  octal(b, 337, 8, h.devminor ?? 0);
  checksum(b);
  return { block: b, overflow };
}

function checksum(b: Buffer): void {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
}

/** padding is the zero fill after size bytes of entry data. */
export function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** encodeHeader returns the header block(s) of one entry (PAX header first when needed). */
export function encodeHeader(h: TarHeader): Buffer {
  const { block, overflow } = ustar(h, TYPEFLAG[h.type]);
  for (const [k, v] of h.xattrs ?? []) overflow.push(paxRecord(`SCHILY.xattr.${k}`, v));
  if (overflow.length === 0) return block;
  const recs = Buffer.concat(overflow);
  const x = ustar({ name: 'PaxHeader', type: 'file', mode: 0o644, uid: 0, gid: 0, size: recs.length, mtime: h.mtime }, 'x').block;
  return Buffer.concat([x, recs, padding(recs.length), block]);
}

/** END_OF_ARCHIVE is the two zero blocks closing a tar. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
