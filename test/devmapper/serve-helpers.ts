// serve-helpers: a real `node dist/cli.js serve --backend devmapper` child
// process and a small gRPC client for it, for the reconciliation tests that
// kill -9 the server and start it again on the same root.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** REPO is the checkout root. */
export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** CLI is the built entry point the tests run. */
export const CLI = join(REPO, 'dist', 'cli.js');

/** MountMsg is a mount as the Snapshots service returns it. */
export interface MountMsg {
  type: string;
  source: string;
  options: string[];
}

/** InfoMsg is the part of a snapshot's Info the tests read. */
export interface InfoMsg {
  name: string;
  parent: string;
  kind: number | string;
}

type Raw = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
let service: grpc.ServiceClientConstructor | undefined;

function snapshotsService(): grpc.ServiceClientConstructor {
  if (service) return service;
  const def = protoLoader.loadSync('containerd/services/snapshots/v1/snapshots.proto', {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    includeDirs: [join(REPO, 'proto')],
  });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  service = (grpc.loadPackageDefinition(def) as any).containerd.services.snapshots.v1.Snapshots as grpc.ServiceClientConstructor;
  return service;
}

/** SnapClient calls the Snapshots service the way containerd does (namespace metadata, snapshotter name). */
export class SnapClient {
  private readonly c: Raw;
  private readonly md = new grpc.Metadata();
  constructor(socket: string, private readonly name = 'tsblock', namespace = 'reconcile') {
    const S = snapshotsService();
    this.c = new S(`unix://${socket}`, grpc.credentials.createInsecure()) as unknown as Raw;
    this.md.set('containerd-namespace', namespace);
  }

  /** call runs one unary method. */
  call<T>(method: string, req: Record<string, unknown>): Promise<T> {
    return new Promise((resolve, reject) => {
      this.c[method]!.call(this.c, { snapshotter: this.name, ...req }, this.md, (err: Error | null, res: T) => (err ? reject(err) : resolve(res)));
    });
  }

  async prepare(key: string, parent = ''): Promise<MountMsg[]> {
    return (await this.call<{ mounts: MountMsg[] }>('Prepare', { key, parent })).mounts;
  }
  async view(key: string, parent: string): Promise<MountMsg[]> {
    return (await this.call<{ mounts: MountMsg[] }>('View', { key, parent })).mounts;
  }
  async mounts(key: string): Promise<MountMsg[]> {
    return (await this.call<{ mounts: MountMsg[] }>('Mounts', { key })).mounts;
  }
  async commit(name: string, key: string): Promise<void> {
    await this.call('Commit', { name, key });
  }
  async remove(key: string): Promise<void> {
    await this.call('Remove', { key });
  }
  async stat(key: string): Promise<InfoMsg> {
    return (await this.call<{ info: InfoMsg }>('Stat', { key })).info;
  }

  /** list streams every snapshot's Info. */
  list(): Promise<InfoMsg[]> {
    return new Promise((resolve, reject) => {
      const out: InfoMsg[] = [];
      const st = this.c.List!.call(this.c, { snapshotter: this.name }, this.md) as grpc.ClientReadableStream<{ info: InfoMsg[] }>;
      st.on('data', (m: { info: InfoMsg[] }) => out.push(...m.info));
      st.on('error', reject);
      st.on('end', () => resolve(out));
    });
  }

  close(): void {
    this.c.close();
  }
}

/** ServeOptions are the settings of one server start. */
export interface ServeOptions {
  root: string;
  socket: string;
  log: string;
  extraArgs?: string[];
  env?: Record<string, string>;
}

function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Server is one running `tsblock serve` child. */
export class Server {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** start spawns the server and waits until its socket accepts connections. */
  static async start(o: ServeOptions, timeoutMs = 180_000): Promise<Server> {
    const fd = openSync(o.log, 'a');
    const args = [CLI, 'serve', '--backend', 'devmapper', '--root', o.root, '--socket', o.socket, '--data-size', '1G', '--base-size', '64M', ...(o.extraArgs ?? [])];
    const child = spawn(process.execPath, args, { stdio: ['ignore', fd, fd], env: { ...process.env, ...o.env } });
    closeSync(fd);
    const s = new Server(child);
    let dead = false;
    void s.exited.then(() => (dead = true));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (dead) throw new Error(`tsblock serve exited during start-up (log: ${o.log})`);
      if (existsSync(o.socket) && (await canConnect(o.socket))) return s;
      await new Promise((r) => setTimeout(r, 100));
    }
    s.child.kill('SIGKILL');
    throw new Error(`tsblock serve did not listen on ${o.socket} within ${timeoutMs} ms (log: ${o.log})`);
  }

  /** kill9 kills the server with SIGKILL and waits for it. */
  async kill9(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }

  /** stop asks the server to exit (SIGTERM) and waits, SIGKILL after timeoutMs. */
  async stop(timeoutMs = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(t);
    }
  }
}
