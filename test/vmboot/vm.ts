/**
 * vm boots a throw-away qemu guest whose root filesystem is one container
 * snapshot handed over as a raw virtio-blk disk, the way a VM runtime
 * (Kata runtime-rs, firecracker-containerd) hands a snapshot to its guest.
 *
 * - The kernel is the newest Debian /boot/vmlinuz-* that has modules; its
 *   ELF vmlinux is unpacked once into ${TSBLOCK_VM_CACHE:-~/.cache/tsblock-vm}
 *   (the cache vm-tests/run-in-vm.sh uses too: booting through the PVH entry
 *   skips the bzImage decompressor, seconds under TCG). Without xz or a
 *   writable cache the bzImage boots, only slower.
 * - The initramfs is built here: Debian's static busybox, the modules for
 *   virtio-pci, virtio-blk and ext4 (with their dependencies and softdeps,
 *   from `modprobe --show-depends`) and guest-init.sh as /init. Stage 1 mounts
 *   /dev/vda as ext4 and switch_roots into it; from then on everything runs
 *   from the snapshot: the image's /bin/sh runs guest.sh (from a tmpfs on the
 *   image's /tmp, so the script itself is never written to the disk).
 * - The guest talks on its serial console (qemu `-serial stdio`): lines
 *   "TSB <word> <args…>" out, "go" lines in (read by guest.sh).
 *
 * Nothing here mounts the disk on the host: a snapshot is either in a VM or
 * mounted on the host, never both.
 */

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const HERE = path.dirname(new URL(import.meta.url).pathname);

/** Kernel is the guest kernel: the image to boot and its release (for modules). */
export interface Kernel {
  image: string;
  release: string;
}

const has = (bin: string): boolean => {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

/** staticBusybox is a busybox that runs without libc (the initramfs has none), or undefined. */
export function staticBusybox(): string | undefined {
  for (const b of ['/bin/busybox', '/usr/bin/busybox']) {
    if (!fs.existsSync(b)) continue;
    try {
      execFileSync('ldd', [b], { stdio: 'ignore' });
    } catch {
      return b; // ldd fails on a static binary
    }
  }
  return undefined;
}

/** vmMissing explains why no guest can boot here (undefined when one can). */
export function vmMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const bin of ['qemu-system-x86_64', 'cpio', 'modprobe', 'e2fsck', 'dumpe2fs']) if (!has(bin)) return `${bin} is missing (vm-tests/provision.sh)`;
  if (!staticBusybox()) return 'a static busybox is needed (apt-get install busybox-static)';
  if (!findKernel()) return 'no /boot/vmlinuz-* with modules (apt-get install linux-image-amd64)';
  return undefined;
}

/** findKernel picks the newest /boot/vmlinuz-* whose modules are installed. */
export function findKernel(): Kernel | undefined {
  let names: string[];
  try {
    names = fs.readdirSync('/boot').filter((n) => n.startsWith('vmlinuz-'));
  } catch {
    return undefined;
  }
  names.sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
  for (const n of names) {
    const release = n.slice('vmlinuz-'.length);
    if (fs.existsSync(`/lib/modules/${release}/modules.dep`)) return { image: path.join('/boot', n), release };
  }
  return undefined;
}

/** bootImage returns the cached ELF vmlinux of k (unpacking it once), or the bzImage itself. */
export function bootImage(k: Kernel): string {
  const cache = process.env.TSBLOCK_VM_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'tsblock-vm');
  const st = fs.statSync(k.image);
  const out = path.join(cache, `vmlinux-${k.release}-${st.size}-${Math.floor(st.mtimeMs / 1000)}`);
  if (fs.existsSync(out) && fs.statSync(out).size > 0) return out;
  if (!has('xz')) return k.image;
  try {
    fs.mkdirSync(cache, { recursive: true });
    const bz = fs.readFileSync(k.image);
    const off = bz.indexOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
    if (off < 0) return k.image;
    let elf: Buffer;
    try {
      elf = execFileSync('xz', ['-dc'], { input: bz.subarray(off), maxBuffer: 512 * 1024 ** 2, stdio: ['pipe', 'pipe', 'ignore'] });
    } catch (err) {
      // trailing data after the xz stream makes xz exit non-zero with the output complete
      elf = (err as { stdout?: Buffer }).stdout ?? Buffer.alloc(0);
    }
    if (elf.length < 4 || elf.readUInt32BE(0) !== 0x7f454c46) return k.image;
    fs.writeFileSync(`${out}.tmp`, elf);
    fs.renameSync(`${out}.tmp`, out);
    return out;
  } catch {
    return k.image;
  }
}

/** buildInitrd writes the stage-1 initramfs (busybox, modules, guest-init.sh, guest.sh) to dir/initrd.cpio. */
export function buildInitrd(dir: string, k: Kernel): string {
  const root = path.join(dir, 'initrd');
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(root, 'modules'), { recursive: true });
  fs.copyFileSync(staticBusybox()!, path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  const mods: string[] = [];
  for (const m of ['virtio_pci', 'virtio_blk', 'ext4']) {
    const deps = execFileSync('modprobe', ['-S', k.release, '--show-depends', m], { encoding: 'utf8' });
    for (const line of deps.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f[0] === 'insmod' && f[1] && !mods.includes(f[1])) mods.push(f[1]);
    }
  }
  if (!mods.some((p) => p.endsWith('/ext4.ko') || p.endsWith('/ext4.ko.xz'))) throw new Error(`modprobe found no ext4 module for ${k.release}`);
  const list: string[] = [];
  for (const p of mods) {
    let name = path.basename(p);
    if (name.endsWith('.xz')) {
      // busybox insmod reads plain .ko files only
      name = name.slice(0, -3);
      fs.writeFileSync(path.join(root, 'modules', name), execFileSync('xz', ['-dc', p], { maxBuffer: 64 * 1024 ** 2 }));
    } else {
      fs.copyFileSync(p, path.join(root, 'modules', name));
    }
    list.push(name);
  }
  fs.writeFileSync(path.join(root, 'modules', 'list'), list.join('\n') + '\n');
  fs.copyFileSync(path.join(HERE, 'guest-init.sh'), path.join(root, 'init'));
  fs.chmodSync(path.join(root, 'init'), 0o755);
  fs.copyFileSync(path.join(HERE, 'guest.sh'), path.join(root, 'guest.sh'));
  const out = path.join(dir, 'initrd.cpio');
  execFileSync('sh', ['-c', `cd "${root}" && find . | cpio -o -H newc --quiet > "${out}"`]);
  return out;
}

/** GuestLine is one "TSB word args…" line the guest printed. */
export interface GuestLine {
  word: string;
  args: string[];
  at: number; // ms since the VM started
}

/** VmOptions says what to boot and what the guest does. */
export interface VmOptions {
  image: string; // the boot image (bootImage)
  initrd: string;
  disk: string; // the snapshot: a file or a block device, attached raw
  params: Record<string, string>; // tsb.<key>=<value> on the kernel command line (no spaces)
  memMB?: number;
  log?: string; // the whole console, appended
}

/** Vm is one running guest. */
export class Vm {
  readonly lines: GuestLine[] = [];
  readonly started = Date.now();
  private proc: ChildProcess;
  private buf = '';
  private raw = ''; // the console's last 4 KiB, for failure messages
  private waiters: Array<() => void> = [];
  private logFd: number | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(opts: VmOptions) {
    const append = ['console=ttyS0', 'rdinit=/init', 'panic=-1', 'quiet', 'loglevel=3', ...Object.entries(opts.params).map(([k, v]) => `tsb.${k}=${v}`)];
    const args = [
      '-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none',
      '-accel', process.env.TSBLOCK_VM_ACCEL === 'kvm' ? 'kvm' : 'tcg,thread=multi',
      '-machine', 'q35', '-cpu', process.env.TSBLOCK_VM_ACCEL === 'kvm' ? 'host' : 'max', '-smp', '1', '-m', String(opts.memMB ?? 512),
      '-kernel', opts.image, '-initrd', opts.initrd, '-append', append.join(' '),
      '-serial', 'stdio',
      // the snapshot as the guest's only disk: raw, no host page cache, so a
      // SIGKILL loses exactly what the guest had not yet handed to the device
      '-drive', `file=${opts.disk},format=raw,if=none,id=root,cache=none,aio=threads`,
      '-device', 'virtio-blk-pci,drive=root',
    ];
    if (opts.log) this.logFd = fs.openSync(opts.log, 'a');
    this.proc = spawn('qemu-system-x86_64', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    liveVms.add(this);
    const onData = (chunk: Buffer) => {
      if (this.logFd !== undefined) fs.writeSync(this.logFd, chunk);
      this.buf += chunk.toString('latin1');
      this.raw = (this.raw + chunk.toString('latin1')).slice(-4096);
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).replace(/\r$/, '');
        this.buf = this.buf.slice(nl + 1);
        const m = /(?:^|\s)TSB (\S+)(.*)$/.exec(line);
        if (m) this.lines.push({ word: m[1]!, args: m[2]!.trim().split(/\s+/).filter(Boolean), at: Date.now() - this.started });
      }
      for (const w of this.waiters.splice(0)) w();
    };
    this.proc.stdout!.on('data', onData);
    this.proc.stderr!.on('data', onData);
    this.proc.stdin!.on('error', () => {}); // EPIPE after the guest is gone
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        liveVms.delete(this);
        for (const w of this.waiters.splice(0)) w();
        resolve({ code, signal });
      });
    });
    this.exited.then(() => {
      if (this.logFd !== undefined) fs.closeSync(this.logFd);
      this.logFd = undefined;
    });
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** words returns every line the guest printed with this word. */
  words(word: string): GuestLine[] {
    return this.lines.filter((l) => l.word === word);
  }

  /** waitFor resolves with the first line with word (also one already printed); rejects on timeout or exit. */
  async waitFor(word: string, timeoutMs: number): Promise<GuestLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find((l) => l.word === word);
      if (hit) return hit;
      if (!this.running) throw new Error(`guest exited before "TSB ${word}"; console tail:\n${this.tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "TSB ${word}" within ${timeoutMs} ms; console tail:\n${this.tail()}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** send writes one line to the guest's console. */
  send(line: string): void {
    this.proc.stdin!.write(`${line}\n`);
  }

  /** kill sends SIGKILL (the power cut) and waits for qemu to be gone. */
  async kill(): Promise<void> {
    if (this.running) this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** waitExit waits for qemu to exit by itself (the guest powered off); SIGKILL after timeoutMs. */
  async waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean }> {
    let timedOut = false;
    const t = setTimeout(() => {
      timedOut = true;
      this.proc.kill('SIGKILL');
    }, timeoutMs);
    const r = await this.exited;
    clearTimeout(t);
    return { ...r, timedOut };
  }

  /** tail is the console's last lines (for failure messages). */
  tail(): string {
    return this.raw.replace(/\r/g, '');
  }
}

const liveVms = new Set<Vm>();

/** killAllVms SIGKILLs every guest this process started that still runs (teardown). */
export async function killAllVms(): Promise<void> {
  await Promise.all([...liveVms].map((v) => v.kill()));
}
