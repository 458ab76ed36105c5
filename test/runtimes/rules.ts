/**
 * rules: when does a VM runtime hand a snapshot's mounts to its guest as a
 * block device? Each runtime's condition, restated from its public source
 * (read, not copied) so tests can hold tsblock's real Prepare/View mounts
 * against it on a real host (stat of the source, /sys/dev/block, a real host
 * mount where the runtime itself would mount).
 *
 * Sources the rules were read from (docs/kata.md cites the same):
 * - Kata Containers 4.1.0+ (kata-containers@7c6ba40c54ea, 2026-08-22)
 *   Go runtime: src/runtime/pkg/containerd-shim-v2/create.go checkAndMount,
 *   src/runtime/pkg/katautils/utils.go IsBlockDevice/ResolvePath,
 *   src/runtime/virtcontainers/container.go create/hotplugDrive/plugDevice,
 *   src/runtime/virtcontainers/mount.go getDeviceForPath/isBlockDevice,
 *   src/runtime/virtcontainers/utils/utils_linux.go GetDevicePathAndFsTypeOptions,
 *   src/runtime/virtcontainers/fs_share_linux.go ShareRootFilesystem.
 *   runtime-rs: src/runtime-rs/crates/resource/src/rootfs/mod.rs handler_rootfs,
 *   src/runtime-rs/crates/resource/src/rootfs/block_rootfs.rs is_block_rootfs/BlockRootfs::new.
 * - firecracker-containerd@be68640a5d22 (2026-07-16): runtime/service.go
 *   Create (rootfs), internal/vm/mount.go IsLocalMount, runtime/drive_handler.go
 *   CreateContainerStubs/Reserve/setReadWriteOptions/PatchAndMount.
 */

import fs from 'node:fs';
import path from 'node:path';

/** SnapMount is one mount as a snapshotter returns it. */
export interface SnapMount {
  type: string;
  source: string;
  options: string[];
}

/** Verdict is what a runtime does with a snapshot's mounts. */
export interface Verdict {
  runtime: 'kata-go' | 'kata-rs' | 'firecracker-containerd';
  /**
   * block: the guest gets a disk and mounts it itself; shared-fs: the host
   * mounts the snapshot and shares the directory (virtio-fs); error: the
   * container does not start.
   */
  outcome: 'block' | 'shared-fs' | 'error';
  /** the path handed to the hypervisor as the disk (a file or a block device) */
  disk?: string;
  /** whether the runtime also mounts the snapshot on the host (and keeps it mounted) */
  hostMounted: boolean;
  /** the filesystem type and options the guest's agent mounts the disk with */
  guestFsType?: string;
  guestOptions?: string[];
  /** which rule decided, in the source's terms */
  rule: string;
}

/** fileKind is stat(2)'s type of path after following symlinks, or 'missing'. */
export function fileKind(p: string): 'block' | 'file' | 'dir' | 'other' | 'missing' {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return 'missing';
  }
  if (st.isBlockDevice()) return 'block';
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  return 'other';
}

// Kata's Go runtime skips the host mount for a few other single-mount kinds
// (FileSystemLayer options, EROFS, nydus); none applies to an ext4 snapshot.
const kataGoSpecial = (m: SnapMount) =>
  m.options.some((o) => o.startsWith('io.katacontainers.fs-opt.')) || m.type === 'erofs' || m.type.startsWith('fuse.nydus') || m.type === 'nydus';

/**
 * kataGoCreate is the Go shim's first decision (create.go checkAndMount):
 * exactly one mount whose source, made absolute and with symlinks resolved,
 * stat()s as a block device, with disable_block_device_use = false, is not
 * mounted on the host; the shim passes Type and Source on. Anything else is
 * mounted on the host at <bundle>/rootfs (every mount, in order, options
 * as given: containerd's mount package, which attaches a loop device for a
 * `loop` option) and decided after that by kataGoAfterHostMount.
 *
 * A direct block rootfs is then hot-plugged (container.go create →
 * hotplugDrive → plugDevice, when the agent and hypervisor support block
 * devices and hot-plug, and the type is neither nydus nor EROFS): the device
 * is attached and the agent mounts it with Fstype = the mount's Type and
 * options only `nouuid` for xfs: the snapshot's own options (ro, noload,
 * discard…) are dropped (fs_share_linux.go ShareRootFilesystem).
 */
export function kataGoCreate(mounts: SnapMount[], cfg = { disableBlockDeviceUse: false }): Verdict | 'host-mount' {
  if (mounts.length === 1) {
    const m = mounts[0]!;
    let resolved: string | undefined;
    try {
      resolved = fs.realpathSync(path.resolve(m.source));
    } catch {
      resolved = undefined;
    }
    if (resolved && fileKind(resolved) === 'block' && !cfg.disableBlockDeviceUse) {
      return {
        runtime: 'kata-go',
        outcome: 'block',
        disk: resolved,
        hostMounted: false,
        guestFsType: m.type,
        guestOptions: m.type === 'xfs' ? ['nouuid'] : [],
        rule: 'checkAndMount: 1 mount, source is S_IFBLK → not mounted; hotplugDrive(Source)',
      };
    }
    if (kataGoSpecial(m)) return { runtime: 'kata-go', outcome: 'shared-fs', hostMounted: false, rule: 'FileSystemLayer/EROFS/nydus special case' };
  }
  return 'host-mount';
}

/** MountEntry is one /proc/self/mounts line. */
interface MountEntry {
  source: string;
  target: string;
  type: string;
  options: string[];
}

const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

function procMounts(): MountEntry[] {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const f = l.split(' ');
      return { source: unescape(f[0]!), target: unescape(f[1]!), type: f[2]!, options: f[3]!.split(',') };
    });
}

/**
 * kataGoAfterHostMount is the Go runtime's decision for a rootfs it mounted
 * on the host at target (container.go hotplugDrive with Mounted = true):
 * the device holding target (stat st_dev, the mount point found by walking up
 * until st_dev changes) is a block device when /sys/dev/block/MAJ:MIN exists
 * (a loop device or a dm device is; overlayfs' anonymous device is not). Then
 * the device named for that mount point in /proc/mounts, symlinks resolved,
 * is hot-plugged and the guest mounts it with the fstype /proc/mounts shows,
 * while the host mount stays in place until the container is deleted.
 * Otherwise the directory is shared with the guest (virtio-fs).
 */
export function kataGoAfterHostMount(target: string): Verdict {
  const st = fs.statSync(target);
  const maj = Number((BigInt(st.dev) >> 8n) & 0xfffn);
  const min = Number((BigInt(st.dev) & 0xffn) | ((BigInt(st.dev) >> 12n) & 0xfff00n));
  let mountPoint = path.resolve(target);
  while (mountPoint !== '/') {
    const parent = path.dirname(mountPoint);
    if (fs.lstatSync(parent).dev !== st.dev) break;
    mountPoint = parent;
  }
  if (mountPoint === '/') return { runtime: 'kata-go', outcome: 'shared-fs', hostMounted: true, rule: 'hotplugDrive: mount point not found → shared' };
  if (!fs.existsSync(`/sys/dev/block/${maj}:${min}/`)) {
    return { runtime: 'kata-go', outcome: 'shared-fs', hostMounted: true, rule: `hotplugDrive: st_dev ${maj}:${min} not in /sys/dev/block → shared (virtio-fs)` };
  }
  const entry = procMounts().find((e) => e.target === mountPoint);
  if (!entry) return { runtime: 'kata-go', outcome: 'error', hostMounted: true, rule: `GetDevicePathAndFsTypeOptions: ${mountPoint} not in /proc/mounts` };
  let dev = entry.source;
  try {
    dev = fs.realpathSync(dev);
  } catch {
    return { runtime: 'kata-go', outcome: 'error', hostMounted: true, rule: `EvalSymlinks(${dev}) failed` };
  }
  if (fileKind(dev) !== 'block') return { runtime: 'kata-go', outcome: 'shared-fs', hostMounted: true, rule: `plugDevice: ${dev} is not S_IFBLK → nothing plugged` };
  return {
    runtime: 'kata-go',
    outcome: 'block',
    disk: dev,
    hostMounted: true,
    guestFsType: entry.type,
    guestOptions: entry.type === 'xfs' ? ['nouuid'] : [],
    rule: `host mount on ${mountPoint === path.resolve(target) ? 'the rootfs dir' : mountPoint}; st_dev ${maj}:${min} in /sys/dev/block → hotplugDrive(${dev}) while mounted on the host`,
  };
}

/**
 * kataRs is runtime-rs (rootfs/mod.rs handler_rootfs): no mount → shared fs
 * of the bundle rootfs; several mounts → error "unsupported rootfs mounts
 * count" (unless they form the EROFS multi-layer shape); one mount →
 * is_block_rootfs: stat(2) of the source (symlinks followed) is S_IFBLK →
 * the device (by st_rdev) is attached; S_IFREG AND an option exactly "loop"
 * → the file is attached as a disk (st_ino as its id) and "loop" is removed
 * from the options. The agent then mounts it with Type and the remaining
 * options as given (plus nouuid for xfs). Any other single mount is mounted
 * on the host and shared (a `loop` option there fails: "Invalid mount
 * option: loop", kata#11464).
 */
export function kataRs(mounts: SnapMount[]): Verdict {
  if (mounts.length === 0) return { runtime: 'kata-rs', outcome: 'shared-fs', hostMounted: true, rule: 'no mounts → share the bundle rootfs' };
  if (mounts.length > 1) {
    const erofs = mounts.some((m) => m.type === 'erofs' || m.type.endsWith('.erofs'));
    return { runtime: 'kata-rs', outcome: erofs ? 'block' : 'error', hostMounted: false, rule: erofs ? 'EROFS multi-layer' : `unsupported rootfs mounts count ${mounts.length}` };
  }
  const m = mounts[0]!;
  const kind = m.source ? fileKind(m.source) : 'missing';
  const opts = (o: string[]) => (m.type === 'xfs' && !o.includes('nouuid') ? [...o, 'nouuid'] : o);
  if (kind === 'block') {
    return { runtime: 'kata-rs', outcome: 'block', disk: fs.realpathSync(m.source), hostMounted: false, guestFsType: m.type, guestOptions: opts(m.options), rule: 'is_block_rootfs: S_IFBLK → device by st_rdev' };
  }
  if (kind === 'file' && m.options.includes('loop')) {
    return {
      runtime: 'kata-rs',
      outcome: 'block',
      disk: m.source,
      hostMounted: false,
      guestFsType: m.type,
      guestOptions: opts(m.options.filter((o) => o !== 'loop')),
      rule: 'is_block_rootfs: S_IFREG + "loop" → file attached, "loop" dropped',
    };
  }
  return { runtime: 'kata-rs', outcome: 'shared-fs', hostMounted: true, rule: `is_block_rootfs: source is ${kind}${kind === 'file' ? ' without "loop"' : ''} → share fs` };
}

/**
 * firecrackerContainerd is runtime/service.go Create: not exactly one mount
 * → error "can only support rootfs with exactly one mount"; a Type prefixed
 * "vm:" is a VM-local mount (nothing attached); otherwise the Source, file or
 * block device alike, is patched into a pre-created container stub drive
 * (drive_handler.go: CreateContainerStubs makes them read-write) and the
 * in-VM agent mounts it with fstype "ext4" hard-coded and options ["rw"]
 * (setReadWriteOptions on nil options): the snapshot's Type and Options,
 * `loop`, `ro` and `noload` included, are ignored. Firecracker opens the
 * path itself, so it must be a regular file or a block device.
 */
export function firecrackerContainerd(mounts: SnapMount[]): Verdict {
  if (mounts.length !== 1) return { runtime: 'firecracker-containerd', outcome: 'error', hostMounted: false, rule: `exactly one mount required (got ${mounts.length})` };
  const m = mounts[0]!;
  if (m.type.startsWith('vm:')) return { runtime: 'firecracker-containerd', outcome: 'shared-fs', hostMounted: false, rule: 'IsLocalMount: "vm:" type, mounted inside the VM' };
  const kind = fileKind(m.source);
  if (kind !== 'block' && kind !== 'file') return { runtime: 'firecracker-containerd', outcome: 'error', hostMounted: false, rule: `drive path is ${kind}` };
  return {
    runtime: 'firecracker-containerd',
    outcome: 'block',
    disk: m.source,
    hostMounted: false,
    guestFsType: 'ext4',
    guestOptions: ['rw'],
    rule: `1 mount, not "vm:" → ${kind} patched into a rw stub drive, mounted ext4 rw`,
  };
}
