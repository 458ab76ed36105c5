// client: one gRPC client for every snapshotter under test, built from the
// same proto files tsblock serves, with containerd's namespace metadata.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { join } from 'node:path';
import { REPO } from './util.mjs';

let Service;
function service() {
  if (Service) return Service;
  const def = protoLoader.loadSync('containerd/services/snapshots/v1/snapshots.proto', {
    keepCase: true, longs: Number, enums: Number, defaults: true, oneofs: true,
    includeDirs: [join(REPO, 'proto')],
  });
  Service = grpc.loadPackageDefinition(def).containerd.services.snapshots.v1.Snapshots;
  return Service;
}

/** SnapClient wraps the Snapshots service with promise methods. */
export class SnapClient {
  constructor(socket, { name = 'bench', namespace = 'bench' } = {}) {
    const S = service();
    this.name = name;
    this.c = new S(`unix://${socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
    this.md = new grpc.Metadata();
    this.md.set('containerd-namespace', namespace);
  }

  call(method, req) {
    return new Promise((resolve, reject) => {
      this.c[method]({ snapshotter: this.name, ...req }, this.md, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  async ready(timeoutMs = 30000) {
    await new Promise((resolve, reject) => this.c.waitForReady(Date.now() + timeoutMs, (e) => (e ? reject(e) : resolve())));
  }

  prepare(key, parent = '', labels = {}) {
    return this.call('Prepare', { key, parent, labels }).then((r) => r.mounts);
  }
  view(key, parent = '', labels = {}) {
    return this.call('View', { key, parent, labels }).then((r) => r.mounts);
  }
  mounts(key) {
    return this.call('Mounts', { key }).then((r) => r.mounts);
  }
  commit(name, key, labels = {}) {
    return this.call('Commit', { name, key, labels });
  }
  remove(key) {
    return this.call('Remove', { key });
  }
  stat(key) {
    return this.call('Stat', { key }).then((r) => r.info);
  }

  /** list streams every snapshot; resolves with the count. */
  list(filters = []) {
    return new Promise((resolve, reject) => {
      let n = 0;
      const st = this.c.List({ snapshotter: this.name, filters }, this.md);
      st.on('data', (r) => (n += r.info.length));
      st.on('error', reject);
      st.on('end', () => resolve(n));
    });
  }

  close() {
    this.c.close();
  }
}
