// `tsblock doctor`: check what tsblock needs from this machine and from its
// configuration, and say what to fix: loop devices, device-mapper and the
// dm-thin target, reflink support of each root's filesystem, mkfs tools,
// each socket, the store, the thin-pool's health, free space, containerd's
// config. Exit status 1 when something is broken.

import { accessSync, closeSync, constants, existsSync, openSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { release } from 'node:os';
import type { InstanceConfig } from '../../config/index.js';
import { devmapperPoolName, listEntries, noDmMessage, openReadOnly, poolSpace, rootSpace } from '../../inspect/inspect.js';
import { ext4ImageDamage } from '../../sys/ext4check.js';
import { runTool, ToolError } from '../../sys/exec.js';
import { canReflink } from '../../sys/reflink.js';
import { XfsFileStore, storeExists } from '../../backends/blockfile/store.js';
import { hasDirectImages } from '../../backends/blockfile/layout.js';
import { errorMessage } from '../../errdefs.js';
import { CONFIG_HELP, daemonHoldsRoot, parseVerb, printJson, selectInstances, socketAnswers, stdio, table, type Io } from '../common.js';

/** doctorUsage is `tsblock help doctor`. */
export const doctorUsage = `usage: tsblock doctor [options]

Checks loop devices, device-mapper (dm-thin), reflink support of each root's
filesystem, mkfs tools, each snapshotter's socket, store and thin-pool, free
space, and containerd's proxy_plugins entry; prints what to fix.

  --containerd-config FILE   containerd config to check (default /etc/containerd/config.toml)
  --fsck                     also run "e2fsck -fn" (read-only) on every committed blockfile image:
                             finds damage past the superblock and group descriptors (inode tables)
${CONFIG_HELP}`;

/** Check is one doctor finding. */
export interface Check {
  check: string;
  status: 'ok' | 'warn' | 'fail' | 'skip';
  detail: string;
  fix?: string;
}

/** doctorCommand runs every check. */
export async function doctorCommand(argv: string[], io: Io = stdio): Promise<number> {
  const p = parseVerb(argv, { 'containerd-config': { type: 'string' }, fsck: { type: 'boolean', default: false } }, io);
  const instances = selectInstances(p);
  const checks: Check[] = [];
  const needDm = instances.some((i) => i.backend === 'devmapper');
  checks.push(isRoot());
  checks.push(loopCheck());
  checks.push(...(await dmChecks(needDm)));
  checks.push(toolsCheck());
  for (const inst of instances) checks.push(...(await instanceChecks(inst, p.values.fsck === true)));
  checks.push(containerdCheck(instances, p.values['containerd-config'] ?? '/etc/containerd/config.toml'));
  const failed = checks.some((c) => c.status === 'fail');
  if (p.values.json) {
    printJson(io, { ok: !failed, checks });
    return failed ? 1 : 0;
  }
  io.out(table(['CHECK', 'STATUS', 'DETAIL'], checks.map((c) => [c.check, c.status.toUpperCase(), c.detail]), io.tty));
  const fixes = checks.filter((c) => c.fix && c.status !== 'ok');
  if (fixes.length > 0) io.out(`\nto fix:\n${fixes.map((c) => `  - ${c.check}: ${c.fix}`).join('\n')}\n`);
  io.out(failed ? '\nsome checks failed\n' : '\nall required checks passed\n');
  return failed ? 1 : 0;
}

/**
 * imageChecks verifies every blockfile image's ext4 superblock and group
 * descriptor checksums (what Prepare checks before cloning a parent) and,
 * with --fsck, runs e2fsck -fn on the committed ones (never written again,
 * so a read-only check of them is exact even while the daemon runs).
 */
async function imageChecks(inst: InstanceConfig, n: string, fsck: boolean): Promise<Check> {
  const check = `${n} images`;
  let entries: { key: string; kind: string; storage: string }[];
  try {
    const store = openReadOnly(inst.root);
    try {
      entries = listEntries(inst, store).filter((e) => e.kind !== 'view');
    } finally {
      store.close();
    }
  } catch (err) {
    return { check, status: 'warn', detail: `cannot list snapshots: ${errorMessage(err)}` };
  }
  const bad: string[] = [];
  for (const e of entries) {
    let damage: string | undefined;
    try {
      damage = ext4ImageDamage(e.storage);
    } catch (err) {
      damage = errorMessage(err);
    }
    if (damage === undefined && fsck && e.kind === 'committed') {
      try {
        await runTool('e2fsck', ['-fn', e.storage]);
      } catch (err) {
        const out = err instanceof ToolError ? err.stderr || err.message : errorMessage(err);
        damage = `e2fsck -fn: ${out.split('\n').filter((l) => l.trim() && !/^e2fsck \d/.test(l)).slice(0, 2).join('; ') || 'errors'}`;
      }
    }
    if (damage !== undefined) bad.push(`${e.key} (${e.storage}): ${damage}`);
  }
  const how = fsck ? 'superblock and group descriptor checksums, e2fsck -fn of committed images' : 'superblock and group descriptor checksums';
  if (bad.length === 0) return { check, status: 'ok', detail: `${entries.length} image(s) sound (${how})` };
  return {
    check,
    status: 'fail',
    detail: `${bad.length} of ${entries.length} image(s) damaged: ${bad.slice(0, 5).join(' | ')}${bad.length > 5 ? ' | …' : ''}`,
    fix: 'remove the damaged snapshots and those built on them (ctr images rm / tsblock rm) and pull the images again',
  };
}

/**
 * thinDeviceChecks verifies the ext4 superblock and group descriptor
 * checksums of every committed devmapper snapshot (what Prepare checks on a
 * child's device). A committed device is usually inactive: it is activated
 * read-only under a name of doctor's own (<pool>-doctor-<id>) for the two
 * reads and removed again; a committed device is never written, so a
 * read-only activation beside the daemon changes nothing it relies on.
 */
async function thinDeviceChecks(inst: InstanceConfig, n: string): Promise<Check> {
  const check = `${n} images`;
  const dm = await import('../../sys/dm.js');
  const thin = await import('../../sys/dm-thin.js');
  if (!dm.dmAvailable()) return { check, status: 'skip', detail: noDmMessage() };
  const pool = devmapperPoolName(inst);
  if (!dm.deviceInfo(pool)) return { check, status: 'skip', detail: `thin-pool ${pool} is not active (the daemon activates it)` };
  let entries: { key: string; id: number; thinId: number; size: number }[];
  try {
    const store = openReadOnly(inst.root);
    try {
      const rows = store.read((tx) => tx.prepare("SELECT snapshot_id AS id, thin_id AS thinId, size FROM dm_devices WHERE state = 'ready'").all() as { id: number; thinId: number; size: number }[]);
      const byId = new Map(rows.map((r) => [r.id, r]));
      entries = listEntries(inst, store)
        .filter((e) => e.kind === 'committed' && byId.has(e.id))
        .map((e) => ({ key: e.key, ...byId.get(e.id)! }));
    } finally {
      store.close();
    }
  } catch (err) {
    return { check, status: 'warn', detail: `cannot list snapshots: ${errorMessage(err)}` };
  }
  const bad: string[] = [];
  for (const e of entries) {
    const own = `${pool}-snap-${e.id}`;
    let name = own;
    let damage: string | undefined;
    try {
      if (!dm.deviceInfo(own)?.activeTable) {
        name = `${pool}-doctor-${e.id}`;
        if (dm.deviceInfo(name)) await dm.removeDevice(name);
        dm.activate(name, [thin.thinTable(dm.devicePath(pool), e.thinId, e.size / 512)], { readOnly: true });
      }
      try {
        damage = ext4ImageDamage(dm.devicePath(name));
      } finally {
        if (name !== own) await dm.removeDevice(name, { tries: 3 });
      }
    } catch (err) {
      damage = `cannot read: ${errorMessage(err)}`;
    }
    if (damage !== undefined) bad.push(`${e.key} (${own}, thin id ${e.thinId}): ${damage}`);
  }
  const how = 'superblock and group descriptor checksums of committed thin devices';
  if (bad.length === 0) return { check, status: 'ok', detail: `${entries.length} device(s) sound (${how})` };
  return {
    check,
    status: 'fail',
    detail: `${bad.length} of ${entries.length} device(s) damaged: ${bad.slice(0, 5).join(' | ')}${bad.length > 5 ? ' | …' : ''}`,
    fix: 'remove the damaged snapshots and those built on them (ctr images rm / tsblock rm) and pull the images again',
  };
}

function isRoot(): Check {
  const root = process.getuid?.() === 0;
  return root
    ? { check: 'privileges', status: 'ok', detail: 'running as root' }
    : { check: 'privileges', status: 'warn', detail: 'not root: some checks cannot run', fix: 'run "sudo tsblock doctor"' };
}

function loopCheck(): Check {
  try {
    closeSync(openSync('/dev/loop-control', 'r+'));
    return { check: 'loop devices', status: 'ok', detail: '/dev/loop-control opens' };
  } catch (err) {
    return { check: 'loop devices', status: 'fail', detail: `/dev/loop-control: ${errorMessage(err)}`, fix: 'modprobe loop (containerd attaches blockfile images to loop devices; owned dm pools use them too)' };
  }
}

async function dmChecks(required: boolean): Promise<Check[]> {
  const sev = required ? 'fail' : 'skip';
  const dm = await import('../../sys/dm.js');
  if (!dm.dmAvailable()) {
    return [{ check: 'device-mapper', status: sev, detail: required ? noDmMessage() : 'not available (only needed by the devmapper backend)', fix: required ? 'modprobe dm_thin_pool, or use backend = "blockfile"' : undefined }];
  }
  const [a, b] = dm.dmVersion();
  const out: Check[] = [{ check: 'device-mapper', status: 'ok', detail: `ioctl interface ${a}.${b}` }];
  const builtin = (() => {
    try {
      return readFileSync(`/lib/modules/${release()}/modules.builtin`, 'utf8').includes('dm-thin-pool');
    } catch {
      return false;
    }
  })();
  const thin = existsSync('/sys/module/dm_thin_pool') || builtin;
  out.push(thin
    ? { check: 'dm-thin target', status: 'ok', detail: 'dm_thin_pool loaded' }
    : { check: 'dm-thin target', status: required ? 'fail' : 'warn', detail: 'dm_thin_pool is not loaded', fix: 'modprobe dm_thin_pool (and add it to /etc/modules-load.d/)' });
  return out;
}

function toolsCheck(): Check {
  const need = ['mkfs.ext4', 'e2fsck', 'resize2fs', 'debugfs', 'dumpe2fs'];
  const missing = need.filter((t) => !onPath(t));
  return missing.length === 0
    ? { check: 'filesystem tools', status: 'ok', detail: need.join(', ') }
    : { check: 'filesystem tools', status: 'fail', detail: `missing: ${missing.join(', ')}`, fix: 'apt-get install e2fsprogs' };
}

function onPath(tool: string): boolean {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin']);
  return dirs.some((d) => {
    try {
      accessSync(join(d, tool), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** blockfileChecks say how images clone under a root: in its store, directly with reflink, or as copies (and what that costs). */
function blockfileChecks(inst: InstanceConfig, n: string): Check[] {
  const human = (b: number) => `${(b / 1024 ** 3).toFixed(1)} GiB`;
  if (storeExists(inst.root)) {
    const s = new XfsFileStore({ root: inst.root }).status();
    const out: Check[] = [];
    if (!s.mounted) {
      const held = daemonHoldsRoot(inst.root);
      out.push({ check: `${n} reflink`, status: 'ok', detail: `images clone in O(1) (FICLONE) inside the XFS store ${s.file}` });
      out.push({ check: `${n} xfs store`, status: held ? 'fail' : 'ok', detail: `${s.file}: ${human(s.allocated)} on disk, not mounted${held ? ' although the daemon runs' : ' (the daemon mounts it at start)'}`, fix: held ? 'restart the daemon (it mounts its store at start); see its log' : undefined });
      return out;
    }
    const pct = s.fsSize ? (100 * (s.fsFree ?? 0)) / s.fsSize : 0;
    out.push({ check: `${n} reflink`, status: 'ok', detail: `${inst.root} cannot reflink; images clone in O(1) (FICLONE) inside its XFS store` });
    out.push({
      check: `${n} xfs store`,
      status: pct < 5 && s.hostFree < 1024 ** 3 ? 'warn' : 'ok',
      detail: `${s.file} (XFS reflink=1 on ${s.device ?? '?'}): ${human(s.allocated)} on disk, ${human(s.fsFree ?? 0)} free of ${human(s.fsSize ?? 0)}, grows into the host's ${human(s.hostFree)} free`,
      fix: pct < 5 && s.hostFree < 1024 ** 3 ? 'free space on the filesystem under the root: the store grows into it' : undefined,
    });
    return out;
  }
  let reflink = false;
  try {
    reflink = canReflink(inst.root);
  } catch {
    reflink = false;
  }
  if (reflink) return [{ check: `${n} reflink`, status: 'ok', detail: `${inst.root} clones images in O(1) (FICLONE)` }];
  if (!hasDirectImages(inst.root)) {
    return [{ check: `${n} reflink`, status: 'ok', detail: `${inst.root} cannot reflink: the daemon makes an XFS store in ${inst.root}/store.xfs at its first start (store = "auto"), where images clone in O(1)` }];
  }
  return [{
    check: `${n} reflink`,
    status: 'warn',
    detail: `${inst.root} cannot reflink and keeps its images directly (made before the store): every container's Prepare copies its whole image and every container costs the image on disk (docs/performance.md: 5-15x slower than overlayfs, ~12x the disk)`,
    fix: 'stop containerd and tsblock, move the root aside, start again: a new root gets an XFS store (containerd pulls the images again); or put the root on XFS (mkfs.xfs -m reflink=1) or btrfs',
  }];
}

async function instanceChecks(inst: InstanceConfig, fsck: boolean): Promise<Check[]> {
  const n = `[${inst.name}]`;
  const out: Check[] = [];
  if (!existsSync(inst.root)) {
    out.push({ check: `${n} root`, status: 'warn', detail: `${inst.root} does not exist yet`, fix: 'start the daemon once (tsblock serve / systemctl start tsblock)' });
    return out;
  }
  try {
    const s = rootSpace(inst.root);
    const pct = s.totalBytes === 0 ? 100 : (100 * s.freeBytes) / s.totalBytes;
    out.push({ check: `${n} root space`, status: pct < 10 ? 'warn' : 'ok', detail: `${inst.root} on ${s.fsType}, ${pct.toFixed(0)}% free`, fix: pct < 10 ? 'free space under the root: images and pools grow into it' : undefined });
  } catch (err) {
    out.push({ check: `${n} root space`, status: 'fail', detail: errorMessage(err) });
  }
  if (inst.backend === 'blockfile') out.push(...blockfileChecks(inst, n));
  const held = daemonHoldsRoot(inst.root);
  if (inst.socket.startsWith('fd://')) {
    out.push({ check: `${n} socket`, status: held ? 'ok' : 'warn', detail: `${inst.socket} (socket-activated); daemon ${held ? 'running' : 'not running'}` });
  } else {
    const answers = await socketAnswers(inst.socket);
    if (answers) out.push({ check: `${n} socket`, status: 'ok', detail: `${inst.socket} answers` });
    else if (held) out.push({ check: `${n} socket`, status: 'fail', detail: `a daemon holds ${inst.root} but ${inst.socket} does not answer`, fix: 'check "journalctl -u tsblock"; the socket may be configured differently than the daemon was started with' });
    else out.push({ check: `${n} socket`, status: 'warn', detail: `${inst.socket}: no daemon running`, fix: 'systemctl start tsblock (or tsblock serve)' });
  }
  try {
    const store = openReadOnly(inst.root);
    try {
      const r = store.db.pragma('quick_check', { simple: true });
      out.push({ check: `${n} store`, status: r === 'ok' ? 'ok' : 'fail', detail: `metadata.db quick_check: ${String(r)}`, fix: r === 'ok' ? undefined : 'restore metadata.db from backup; containerd will re-pull images' });
    } finally {
      store.close();
    }
  } catch (err) {
    out.push({ check: `${n} store`, status: 'warn', detail: errorMessage(err) });
  }
  if (inst.backend === 'blockfile') out.push(await imageChecks(inst, n, fsck));
  if (inst.backend === 'devmapper') {
    out.push(await thinDeviceChecks(inst, n));
    try {
      const p = await poolSpace(inst);
      const pct = p.dataTotalBytes === 0 ? 0 : (100 * p.dataUsedBytes) / p.dataTotalBytes;
      const mpct = p.metadataTotalBytes === 0 ? 0 : (100 * p.metadataUsedBytes) / p.metadataTotalBytes;
      const bad = p.failed || p.needsCheck || p.mode !== 'rw';
      out.push({
        check: `${n} thin-pool`,
        status: bad ? 'fail' : pct > 80 || mpct > 80 ? 'warn' : 'ok',
        detail: `${p.pool}: mode ${p.mode}${p.needsCheck ? ', needs_check' : ''}, data ${pct.toFixed(0)}%, metadata ${mpct.toFixed(0)}%`,
        fix: bad ? 'stop tsblock, deactivate the pool, run thin_check / thin_repair on its metadata' : pct > 80 || mpct > 80 ? 'grow the pool or remove images' : undefined,
      });
    } catch (err) {
      out.push({ check: `${n} thin-pool`, status: 'fail', detail: errorMessage(err), fix: 'start the daemon (an owned pool is created at start), or "tsblock pool create"' });
    }
  }
  return out;
}

function containerdCheck(instances: InstanceConfig[], path: string): Check {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return { check: 'containerd config', status: 'warn', detail: `${path} not readable`, fix: 'add a [proxy_plugins.<name>] entry (docs/containerd.md)' };
  }
  const missing = instances.filter((i) => !i.socket.startsWith('fd://') && !text.includes(i.socket));
  return missing.length === 0
    ? { check: 'containerd config', status: 'ok', detail: `${path} names every socket` }
    : { check: 'containerd config', status: 'warn', detail: `${path} has no proxy plugin for ${missing.map((m) => m.socket).join(', ')}`, fix: 'add [proxy_plugins.<name>] type="snapshot" address="<socket>" and restart containerd (docs/containerd.md)' };
}
