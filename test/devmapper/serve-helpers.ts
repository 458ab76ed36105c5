// serve-helpers: a real `node dist/cli.js serve --backend devmapper` child
// process and a small gRPC client for it, for the reconciliation tests that
// kill -9 the server and start it again on the same root.
import type { ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { snapshotsClientConstructor } from '../../src/proto/load.js';
import { ServerProc } from '../helpers/server.js';

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
  /** kind is the proto enum number (the shared loader's enums: Number). */
  kind: number;
}

type Raw = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

/** SnapClient calls the Snapshots service the way containerd does (namespace metadata, snapshotter name). */
export class SnapClient {
  private readonly c: Raw;
  private readonly md = new grpc.Metadata();
  constructor(socket: string, private readonly name = 'tsblock', namespace = 'reconcile') {
    const S = snapshotsClientConstructor();
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

/** DEVMAPPER_ARGS are the backend flags every devmapper test server runs with. */
const DEVMAPPER_ARGS = ['--backend', 'devmapper', '--data-size', '1G', '--base-size', '64M'];

/** Server is one running `tsblock serve --backend devmapper` child (test/helpers/server.ts's ServerProc). */
export class Server {
  private constructor(private readonly proc: ServerProc) {}

  get child(): ChildProcess {
    return this.proc.child;
  }

  get exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.proc.exited;
  }

  /** start spawns the server and waits until its socket accepts connections. */
  static async start(o: ServeOptions, timeoutMs = 180_000): Promise<Server> {
    const { proc, state } = await ServerProc.start({
      root: o.root,
      socket: o.socket,
      log: o.log,
      args: o.extraArgs,
      env: o.env,
      timeoutMs,
      backendArgs: DEVMAPPER_ARGS,
      quiet: false,
      hostEnv: true,
    });
    if (state === 'died') throw new Error(`tsblock serve exited during start-up (log: ${o.log})`);
    return new Server(proc);
  }

  /** kill9 kills the server with SIGKILL and waits for it. */
  kill9(): Promise<void> {
    return this.proc.kill9();
  }

  /** stop asks the server to exit (SIGTERM) and waits, SIGKILL after timeoutMs. */
  stop(timeoutMs = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.proc.stop(timeoutMs);
  }
}
