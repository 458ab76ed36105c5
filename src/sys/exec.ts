// exec is the one place tsblock runs other programs: filesystem tools that
// have no syscall equivalent (mkfs.ext4, debugfs, e2fsck, resize2fs). Always
// argument arrays through execa, never a shell; failures carry the command
// line and the tail of stderr so a log line is enough to diagnose them.

import { readExt4Groups } from './fsinfo.js';

// execa is imported on first use: loading it costs the daemon ~10 MB of RSS
// and ~15 ms of start-up, and a running blockfile daemon rarely spawns a
// tool (mkfs once for the base image, resize2fs for a max-size label).
let execaModule: Promise<typeof import('execa')> | undefined;
const loadExeca = (): Promise<typeof import('execa')> => (execaModule ??= import('execa'));

/** ToolOptions tune runTool. */
export interface ToolOptions {
  /** timeoutMs kills the tool after this long (default 5 minutes). */
  timeoutMs?: number;
  /** input is written to the tool's stdin. */
  input?: string;
}

/** ToolResult is a finished tool's output. */
export interface ToolResult {
  stdout: string;
  stderr: string;
}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
const STDERR_TAIL_LINES = 8;

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** ToolError is thrown when a tool cannot start, fails or times out. */
export class ToolError extends Error {
  constructor(
    message: string,
    readonly tool: string,
    readonly args: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    Object.defineProperty(this, 'name', { value: 'ToolError', enumerable: false });
  }
}

/** runTool runs tool with args (no shell) and returns its output, or throws ToolError. */
export async function runTool(tool: string, args: string[], opts: ToolOptions = {}): Promise<ToolResult> {
  const { execa } = await loadExeca();
  const r = await execa(tool, args, {
    timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : 'pipe',
    reject: false,
    stripFinalNewline: false,
    env: { LC_ALL: 'C' },
  });
  const stdout = String(r.stdout ?? '');
  const stderr = String(r.stderr ?? '');
  if (r.failed) {
    const why = r.timedOut
      ? `timed out after ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`
      : r.exitCode !== undefined
        ? `exited with ${r.exitCode}`
        : (r.signal ?? r.shortMessage ?? 'failed');
    const err = tail(stderr, STDERR_TAIL_LINES) || tail(stdout, STDERR_TAIL_LINES);
    throw new ToolError(`${tool} ${args.join(' ')}: ${why}${err ? `: ${err}` : ''}`, tool, args, r.exitCode, stderr, {
      cause: r.cause,
    });
  }
  return { stdout, stderr };
}

/** MakeExt4Options tune makeExt4. */
export interface MakeExt4Options {
  label?: string;
  /** noLostFound removes /lost+found (containers expect an empty root). */
  noLostFound?: boolean;
  /** rootMode is the root directory's permission bits (default 0o755). */
  rootMode?: number;
  /**
   * discard lets mkfs discard the target first (default true). On a sparse
   * file that punches holes, so the result stays sparse and mkfs can mark
   * inode tables zeroed (ITABLE_ZEROED), which keeps the kernel's lazy
   * init thread from later writing them out densely.
   */
  discard?: boolean;
  /**
   * prezeroed tells mkfs the target already reads as zeros everywhere
   * (`assume_storage_prezeroed`, e2fsprogs ≥ 1.47): it marks every group's
   * inode table zeroed (ITABLE_ZEROED) without writing it, so no later rw
   * mount starts the kernel's lazy init thread. Only for a target that truly
   * reads zeros: a fresh thin device of a pool that zeroes new blocks.
   */
  prezeroed?: boolean;
}

/**
 * makeExt4 formats target (an existing, sized image file or block device) as
 * ext4 with lazy init (≈10 ms and ≈4 MB allocated for a 10 GiB sparse file).
 */
export async function makeExt4(target: string, opts: MakeExt4Options = {}): Promise<void> {
  const ext = ['lazy_itable_init=1', 'lazy_journal_init=1', 'root_owner=0:0'];
  if (opts.discard === false) ext.push('nodiscard');
  if (opts.prezeroed === true) ext.push('assume_storage_prezeroed=1');
  const args = ['-q', '-F', '-m', '0', '-E', ext.join(',')];
  if (opts.label !== undefined) args.push('-L', opts.label);
  args.push(target);
  await runTool('mkfs.ext4', args);
  const mode = opts.rootMode ?? 0o755;
  // debugfs -w applies requests in order; -R takes one request, so run it
  // per change (only when needed: root is already 0755 from mkfs).
  if (opts.noLostFound) await debugfsWrite(target, 'rmdir lost+found');
  if (mode !== 0o755) await debugfsWrite(target, `sif / mode 0${(0o040000 | (mode & 0o7777)).toString(8)}`);
}

/** GROUP_FLAGS are ext4's block group flags (bg_flags), as dumpe2fs names them. */
const GROUP_FLAGS: Record<string, number> = { INODE_UNINIT: 0x1, BLOCK_UNINIT: 0x2, ITABLE_ZEROED: 0x4 };

/**
 * growExt4 grows the ext4 filesystem on target (an unmounted image file or
 * device, already made bigger) to fill it, with resize2fs. resize2fs leaves
 * the new groups' inode tables to the kernel's lazy init thread, which
 * writes zeros into them on the first rw mount: on a thin device that
 * provisions pool blocks in every container (2 MiB a group). prezeroed says
 * the grown part reads as zeros (the new range of a thin device in a pool
 * that zeroes new blocks, the hole a sparse file was extended by): the new
 * groups are then marked ITABLE_ZEROED with debugfs, as mkfs's
 * assume_storage_prezeroed marks them, and lazy init leaves them alone.
 * Returns how many groups were marked.
 */
export async function growExt4(target: string, opts: { prezeroed?: boolean } = {}): Promise<number> {
  if (opts.prezeroed !== true) {
    await runTool('resize2fs', ['-f', target]);
    return 0;
  }
  const before = readExt4Groups(target);
  await runTool('resize2fs', ['-f', target]);
  const groups = ext4GroupFlags(await runTool('dumpe2fs', [target]));
  const requests: string[] = [];
  for (let g = before; g < groups.length; g++) {
    const flags = groups[g]!;
    if ((flags & GROUP_FLAGS.ITABLE_ZEROED!) !== 0) continue;
    requests.push(`set_bg ${g} flags ${flags | GROUP_FLAGS.ITABLE_ZEROED!}`, `set_bg ${g} checksum calc`);
  }
  if (requests.length === 0) return 0;
  await debugfsRun(target, ['-w', '-f', '-', target], requests.join('\n') + '\n');
  return requests.length / 2;
}

/** ext4GroupFlags reads every group's bg_flags from dumpe2fs's listing ("Group N: … [INODE_UNINIT, …]"), by group number. */
export function ext4GroupFlags({ stdout }: { stdout: string }): number[] {
  const flags: number[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^Group (\d+): .*?(?:\[([A-Z_, ]*)\])?\s*$/.exec(line);
    if (!m) continue;
    let v = 0;
    for (const name of (m[2] ?? '').split(',').map((n) => n.trim()).filter(Boolean)) v |= GROUP_FLAGS[name] ?? 0;
    flags[Number(m[1])] = v;
  }
  return flags;
}

// debugfs reports request errors on stderr but exits 0, so any stderr line
// other than its version banner is a failure.
async function debugfsWrite(target: string, request: string): Promise<void> {
  await debugfsRun(target, ['-w', '-R', request, target]);
}

async function debugfsRun(target: string, args: string[], input?: string): Promise<void> {
  const { stderr } = await runTool('debugfs', args, { input });
  const problems = stderr
    .split('\n')
    .filter((l) => l.trim() !== '' && !/^debugfs \d/.test(l));
  if (problems.length > 0) {
    throw new ToolError(`debugfs ${args.join(' ')} (${target}): ${problems.join('; ')}`, 'debugfs', args, 0, stderr);
  }
}
