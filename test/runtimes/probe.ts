/**
 * probe holds tsblock's real Prepare and View mounts against each VM
 * runtime's rule (rules.ts) on the machine it runs on, for one backend:
 *
 * 1. Prepare a layer, mount it on the host (as containerd's unpacker would),
 *    write /marker, unmount, Commit it.
 * 2. Prepare an active snapshot and a View on it.
 * 3. For each: the number of mounts, type, options and source kind; the
 *    verdict of Kata's Go runtime (after a real host mount where that runtime
 *    mounts on the host: checkAndMount's fallback), runtime-rs and
 *    firecracker-containerd; for every verdict that hands over a disk, the
 *    disk itself: read with O_DIRECT (dd iflag=direct: the first 4 KiB), the
 *    ext4 superblock's magic and size against the disk's size, then mounted
 *    with exactly the options that runtime's guest agent would use (on the
 *    host, in a private mount namespace: `unshare -m`), /marker read, and the
 *    mount's ro/rw state recorded.
 *
 * probe returns the rows and a markdown table (what docs/kata.md shows).
 */

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { firecrackerContainerd, fileKind, kataGoAfterHostMount, kataGoCreate, kataRs, type SnapMount, type Verdict } from './rules.js';

/** ProbeClient is the part of a Snapshots client the probe needs. */
export interface ProbeClient {
  prepare(key: string, parent?: string): Promise<SnapMount[]>;
  view(key: string, parent: string): Promise<SnapMount[]>;
  commit(name: string, key: string): Promise<void>;
  remove(key: string): Promise<void>;
}

/** DiskCheck is what was found on a disk a runtime would hand over. */
export interface DiskCheck {
  directRead: boolean; // 4 KiB read with O_DIRECT
  ext4Magic: boolean;
  fsBytes: number; // blocks_count * block size from the superblock
  diskBytes: number; // size of the file or block device
  readOnlyDevice: boolean; // a block device's BLKROGET (blockdev --getro); false for a file
  guestMount: string; // 'ro' | 'rw' | 'failed: …' with the runtime's guest options; 'not tried: …'
  markerSeen: boolean;
}

/** Row is one snapshot kind against one runtime. */
export interface Row {
  snapshot: 'Prepare' | 'View';
  mounts: SnapMount[];
  sourceKind: string;
  verdict: Verdict;
  disk?: DiskCheck;
}

const MARKER = 'tsblock runtime probe\n';

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function sizeOf(p: string): number {
  if (fileKind(p) === 'block') return Number(sh('blockdev', ['--getsize64', p]).trim());
  return fs.statSync(p).size;
}

/** mountOpts turns a mount's options into `mount -o` (util-linux sets up the loop device for `loop`, as containerd's mount package does). */
const mountArgs = (m: SnapMount, target: string) => ['-t', m.type, ...(m.options.length ? ['-o', m.options.join(',')] : []), m.source, target];

/** checkDisk reads disk the way a guest would see it and mounts it with guestOptions in a private mount namespace. */
export function checkDisk(disk: string, fsType: string, guestOptions: string[], scratch: string, hostMountedAt?: string): DiskCheck {
  const readOnlyDevice = fileKind(disk) === 'block' && sh('blockdev', ['--getro', disk]).trim() === '1';
  const out: DiskCheck = { directRead: false, ext4Magic: false, fsBytes: 0, diskBytes: sizeOf(disk), readOnlyDevice, guestMount: 'not tried', markerSeen: false };
  const head = path.join(scratch, 'head.bin');
  try {
    sh('dd', [`if=${disk}`, `of=${head}`, 'bs=4096', 'count=1', 'iflag=direct', 'status=none']);
    out.directRead = fs.statSync(head).size === 4096;
    const b = fs.readFileSync(head);
    const sb = b.subarray(1024, 2048);
    out.ext4Magic = sb.readUInt16LE(56) === 0xef53;
    const blockSize = 1024 << sb.readUInt32LE(24);
    const blocks = Number(BigInt(sb.readUInt32LE(4)) + (BigInt(sb.readUInt32LE(0x150)) << 32n));
    out.fsBytes = blocks * blockSize;
  } finally {
    fs.rmSync(head, { force: true });
  }
  if (hostMountedAt) {
    // a second mount of a device the host has mounted would only share the
    // host's superblock: say what the guest would get instead
    out.guestMount = `not tried: also mounted on the host${readOnlyDevice ? ', read-only device' : ''}`;
    out.markerSeen = fs.readFileSync(path.join(hostMountedAt, 'marker'), 'utf8') === MARKER;
    return out;
  }
  // the guest's mount: a disk is a block device in the guest, so a file is
  // given a loop device here (never "loop" from the runtime's options)
  const target = path.join(scratch, 'guest');
  fs.mkdirSync(target, { recursive: true });
  const opts = [...guestOptions, ...(fileKind(disk) === 'file' ? ['loop'] : [])];
  const script = [
    'set -e',
    `mount -t ${fsType} ${opts.length ? `-o ${opts.join(',')}` : ''} "$1" "$2"`,
    'state=$(awk -v t="$2" \'$2 == t { split($4, o, ","); print o[1] }\' /proc/self/mounts)',
    'if [ -f "$2/marker" ]; then m=$(cat "$2/marker" | head -c 100); else m=; fi',
    'umount "$2"',
    'printf "%s\\n%s\\n" "$state" "$m"',
  ].join('\n');
  try {
    const r = sh('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'guest-mount', disk, target]).split('\n');
    out.guestMount = r[0] ?? '';
    out.markerSeen = `${r[1]}\n` === MARKER;
  } catch (err) {
    out.guestMount = `failed: ${String((err as { stderr?: string }).stderr ?? err).trim().slice(0, 120)}`;
  }
  fs.rmSync(target, { recursive: true, force: true });
  return out;
}

/** probe runs the whole comparison for one backend; keys are prefixed so it can share a snapshotter. */
export async function probe(c: ProbeClient, scratch: string, prefix = 'rt'): Promise<Row[]> {
  const rows: Row[] = [];
  const target = path.join(scratch, 'host');
  fs.mkdirSync(target, { recursive: true });
  // 1. a committed layer with a marker in it
  const layer = await c.prepare(`${prefix}-layer`);
  if (layer.length !== 1) throw new Error(`Prepare returned ${layer.length} mounts`);
  sh('mount', mountArgs(layer[0]!, target));
  try {
    fs.writeFileSync(path.join(target, 'marker'), MARKER);
  } finally {
    sh('umount', [target]);
  }
  await c.commit(`${prefix}-committed`, `${prefix}-layer`);
  // 2. an active snapshot and a view
  const kinds: Array<['Prepare' | 'View', SnapMount[]]> = [
    ['Prepare', await c.prepare(`${prefix}-active`, `${prefix}-committed`)],
    ['View', await c.view(`${prefix}-view`, `${prefix}-committed`)],
  ];
  try {
    for (const [snapshot, mounts] of kinds) {
      const sourceKind = mounts.map((m) => fileKind(m.source)).join('+');
      // Kata Go: direct, or mounted on the host and decided from the mount
      const created = kataGoCreate(mounts);
      if (created === 'host-mount') {
        // the device Kata would plug exists only while its host mount does:
        // decide and read it with the host mount in place, as the guest would
        for (const m of mounts) sh('mount', mountArgs(m, target));
        try {
          const go = kataGoAfterHostMount(target);
          const row: Row = { snapshot, mounts, sourceKind, verdict: go };
          if (go.outcome === 'block' && go.disk) row.disk = checkDisk(go.disk, go.guestFsType ?? mounts[0]!.type, go.guestOptions ?? [], scratch, target);
          rows.push(row);
        } finally {
          sh('umount', [target]);
        }
      }
      for (const v of [...(created === 'host-mount' ? [] : [created]), kataRs(mounts), firecrackerContainerd(mounts)]) {
        const row: Row = { snapshot, mounts, sourceKind, verdict: v };
        if (v.outcome === 'block' && v.disk) row.disk = checkDisk(v.disk, v.guestFsType ?? mounts[0]!.type, v.guestOptions ?? [], scratch);
        rows.push(row);
      }
    }
  } finally {
    await c.remove(`${prefix}-view`);
    await c.remove(`${prefix}-active`);
    await c.remove(`${prefix}-committed`);
  }
  return rows;
}

/** table renders rows as the markdown table docs/kata.md shows. */
export function table(backend: string, rows: Row[]): string {
  const lines = [
    `| backend | snapshot | mounts returned | source | runtime | outcome | disk handed over | host mount kept | guest mounts with | guest sees |`,
    `| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`,
  ];
  for (const r of rows) {
    const ms = r.mounts.map((m) => `\`{${m.type}, ${m.source.replace(/.*\//, '…/')}, [${m.options.join(',')}]}\``).join(' ');
    const v = r.verdict;
    const guest = v.outcome === 'block' ? `${v.guestFsType} [${(v.guestOptions ?? []).join(',')}]` : '—';
    const sees = r.disk
      ? `${r.disk.guestMount}${r.disk.readOnlyDevice && !r.disk.guestMount.includes('read-only') ? ' (read-only device)' : ''}${r.disk.markerSeen ? ', layer content' : ''}${r.disk.ext4Magic ? '' : ', NO ext4'}${r.disk.directRead ? ', O_DIRECT read ok' : ''}`
      : '—';
    const diskName = v.disk ? v.disk.replace(/^.*\/snapshots\//, '…/snapshots/').replace(/^\/dev\/mapper\/.*-snap-/, '/dev/mapper/…-snap-') : '—';
    lines.push(`| ${backend} | ${r.snapshot} | ${r.mounts.length}: ${ms} | ${r.sourceKind} | ${v.runtime} | ${v.outcome} | ${diskName} | ${v.hostMounted ? 'yes' : 'no'} | ${guest} | ${sees} |`);
  }
  return lines.join('\n') + '\n';
}
