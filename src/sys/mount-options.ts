// mount-options turns containerd-style mount option strings into mount(2)
// arguments: flag words become MS_* bits, the pseudo-options containerd
// handles itself (`loop`, `direct-io`) are stripped, the rest is the
// filesystem's data string. Pure: unit-tested without root.

/** MS_* mount(2) flags (linux/mount.h). */
export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_SYNCHRONOUS = 0x10;
export const MS_REMOUNT = 0x20;
export const MS_MANDLOCK = 0x40;
export const MS_DIRSYNC = 0x80;
export const MS_NOSYMFOLLOW = 0x100;
export const MS_NOATIME = 0x400;
export const MS_NODIRATIME = 0x800;
export const MS_BIND = 0x1000;
export const MS_MOVE = 0x2000;
export const MS_REC = 0x4000;
export const MS_SILENT = 0x8000;
export const MS_UNBINDABLE = 0x20000;
export const MS_PRIVATE = 0x40000;
export const MS_SLAVE = 0x80000;
export const MS_SHARED = 0x100000;
export const MS_RELATIME = 0x200000;
export const MS_STRICTATIME = 0x1000000;
export const MS_LAZYTIME = 0x2000000;

/** MS_PROPAGATION is the set of propagation-type bits, which need their own mount(2) call. */
export const MS_PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE;

// [clear, bits]: clear=true means the option removes the bits (rw, suid…).
const FLAG_OPTIONS: Record<string, [boolean, number]> = {
  defaults: [false, 0],
  ro: [false, MS_RDONLY],
  rw: [true, MS_RDONLY],
  nosuid: [false, MS_NOSUID],
  suid: [true, MS_NOSUID],
  nodev: [false, MS_NODEV],
  dev: [true, MS_NODEV],
  noexec: [false, MS_NOEXEC],
  exec: [true, MS_NOEXEC],
  sync: [false, MS_SYNCHRONOUS],
  async: [true, MS_SYNCHRONOUS],
  dirsync: [false, MS_DIRSYNC],
  mand: [false, MS_MANDLOCK],
  nomand: [true, MS_MANDLOCK],
  noatime: [false, MS_NOATIME],
  atime: [true, MS_NOATIME],
  nodiratime: [false, MS_NODIRATIME],
  diratime: [true, MS_NODIRATIME],
  relatime: [false, MS_RELATIME],
  norelatime: [true, MS_RELATIME],
  strictatime: [false, MS_STRICTATIME],
  nostrictatime: [true, MS_STRICTATIME],
  lazytime: [false, MS_LAZYTIME],
  nolazytime: [true, MS_LAZYTIME],
  nosymfollow: [false, MS_NOSYMFOLLOW],
  remount: [false, MS_REMOUNT],
  bind: [false, MS_BIND],
  rbind: [false, MS_BIND | MS_REC],
  silent: [false, MS_SILENT],
  loud: [true, MS_SILENT],
};

const PROPAGATION_OPTIONS: Record<string, number> = {
  private: MS_PRIVATE,
  rprivate: MS_PRIVATE | MS_REC,
  shared: MS_SHARED,
  rshared: MS_SHARED | MS_REC,
  slave: MS_SLAVE,
  rslave: MS_SLAVE | MS_REC,
  unbindable: MS_UNBINDABLE,
  runbindable: MS_UNBINDABLE | MS_REC,
};

/** ParsedMountOptions is what parseMountOptions returns. */
export interface ParsedMountOptions {
  /** flags are the MS_* bits for the main mount(2) call (no propagation bits). */
  flags: number;
  /** data is the filesystem-specific option string ("" for none). */
  data: string;
  /** loop is set when the `loop` pseudo-option asks for a loop device. */
  loop: boolean;
  /** readOnly is the net effect of ro/rw (last one wins). */
  readOnly: boolean;
  /** directIo is set by the `direct-io` pseudo-option (loop devices only). */
  directIo: boolean;
  /** propagation holds MS_PRIVATE/SHARED/SLAVE/UNBINDABLE (|MS_REC), applied by a second call. */
  propagation: number;
}

/** parseMountOptions maps containerd mount options to mount(2) arguments. */
export function parseMountOptions(options: string[]): ParsedMountOptions {
  let flags = 0;
  let propagation = 0;
  let loop = false;
  let directIo = false;
  const data: string[] = [];
  for (const opt of options) {
    if (opt === '') continue;
    if (opt === 'loop') {
      loop = true;
      continue;
    }
    if (opt === 'direct-io') {
      directIo = true;
      continue;
    }
    // hasOwn, not a plain lookup: "constructor" must stay a data option.
    if (Object.hasOwn(FLAG_OPTIONS, opt)) {
      const [clear, bits] = FLAG_OPTIONS[opt]!;
      flags = clear ? flags & ~bits : flags | bits;
      continue;
    }
    if (Object.hasOwn(PROPAGATION_OPTIONS, opt)) {
      propagation |= PROPAGATION_OPTIONS[opt]!;
      continue;
    }
    data.push(opt);
  }
  return { flags, data: data.join(','), loop, readOnly: (flags & MS_RDONLY) !== 0, directIo, propagation };
}
