// Config layering (defaults < file < flags < env) and validation that
// reports every problem at once.

import { describe, expect, it } from 'vitest';
import { parse } from 'smol-toml';
import { defaultConfigText, dumpConfig, findInstance, loadConfig, parseHostPort } from '../../../src/config/index.js';
import { InvalidArgumentError } from '../../../src/errdefs.js';

const noEnv = {};
const load = (fileText: string | undefined, flags = {}, env: NodeJS.ProcessEnv = noEnv) =>
  loadConfig({ fileText: fileText ?? '', flags, env, configPath: '/etc/tsblock/test.toml' });

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return (err as Error).message.split('\n').slice(1).map((l) => l.replace(/^\s*- /, ''));
  }
  throw new Error('expected an InvalidArgumentError');
}

describe('config defaults', () => {
  it('without a file serves one blockfile snapshotter "tsblock" at the documented paths', () => {
    const { config } = loadConfig({ env: noEnv, configPath: undefined, fileText: '' });
    expect(config.snapshotters).toEqual([
      expect.objectContaining({ name: 'tsblock', backend: 'blockfile', root: '/var/lib/tsblock', socket: '/run/tsblock/tsblock.sock', mountOptions: [], discard: false }),
    ]);
    expect(config.logLevel).toBe('info');
    expect(config.metricsAddress).toBe('127.0.0.1:9465');
    expect(config.metricsAddressExplicit).toBe(false);
  });

  it('a missing default config file is fine, but a named one must exist', () => {
    expect(() => loadConfig({ env: {} , flags: {} })).not.toThrow();
    expect(problems(() => loadConfig({ env: { TSBLOCK_CONFIG: '/nonexistent/x.toml' } }))[0]).toMatch(/cannot read config \/nonexistent\/x.toml/);
  });

  it('the default config text parses to exactly the built-in defaults', () => {
    const fromText = load(defaultConfigText()).config;
    const builtIn = loadConfig({ env: noEnv, fileText: '' }).config;
    expect({ ...fromText, metricsAddressExplicit: false }).toEqual({ ...builtIn, snapshotters: [{ ...builtIn.snapshotters[0], baseSize: 10 * 1024 ** 3 }] });
  });
});

describe('config layering', () => {
  const file = `
log_level = "warn"
[metrics]
address = "127.0.0.1:9999"
[snapshotters.tsblock]
root = "/srv/tsblock"
base_size = "2G"
mount_options = ["discard"]
`;
  it('the file overrides defaults', () => {
    const c = load(file).config;
    expect(c.logLevel).toBe('warn');
    expect(c.metricsAddress).toBe('127.0.0.1:9999');
    expect(c.metricsAddressExplicit).toBe(true);
    expect(c.snapshotters[0]).toMatchObject({ root: '/srv/tsblock', baseSize: 2 * 1024 ** 3, mountOptions: ['discard'], socket: '/run/tsblock/tsblock.sock' });
  });

  it('flags override the file', () => {
    const c = load(file, { root: '/flag/root', 'log-level': 'debug', 'base-size': '4G' }).config;
    expect(c.logLevel).toBe('debug');
    expect(c.snapshotters[0]).toMatchObject({ root: '/flag/root', baseSize: 4 * 1024 ** 3, mountOptions: ['discard'] });
  });

  it('environment overrides flags', () => {
    const c = load(file, { root: '/flag/root', 'log-level': 'debug' }, { TSBLOCK_ROOT: '/env/root', TSBLOCK_LOG_LEVEL: 'error', TSBLOCK_MOUNT_OPTIONS: 'discard, lazytime', TSBLOCK_METRICS_ADDRESS: '' }).config;
    expect(c.logLevel).toBe('error');
    expect(c.metricsAddress).toBe('');
    expect(c.snapshotters[0]).toMatchObject({ root: '/env/root', mountOptions: ['discard', 'lazytime'] });
  });

  it('--snapshotter names a new instance when the file defines none', () => {
    const c = load(undefined, { snapshotter: 'kata', backend: 'devmapper', 'data-size': '1G' }).config;
    expect(c.snapshotters).toHaveLength(1);
    expect(c.snapshotters[0]).toMatchObject({ name: 'kata', backend: 'devmapper', root: '/var/lib/tsblock-kata', socket: '/run/tsblock/kata.sock', dataSize: 1024 ** 3 });
  });
});

describe('several snapshotters', () => {
  const two = `
[snapshotters.blockfile]
root = "/var/lib/tsblock-blockfile"
socket = "/run/tsblock/blockfile.sock"
base_size = "8G"
[snapshotters.dm]
backend = "devmapper"
root = "/var/lib/tsblock-dm"
socket = "/run/tsblock/dm.sock"
base_size = "20G"
discard = true
`;
  it('each has its own root, socket, backend and size', () => {
    const c = load(two).config;
    expect(c.snapshotters.map((s) => [s.name, s.backend, s.root, s.socket, s.baseSize, s.discard])).toEqual([
      ['blockfile', 'blockfile', '/var/lib/tsblock-blockfile', '/run/tsblock/blockfile.sock', 8 * 1024 ** 3, false],
      ['dm', 'devmapper', '/var/lib/tsblock-dm', '/run/tsblock/dm.sock', 20 * 1024 ** 3, true],
    ]);
  });

  it('flags need --snapshotter to say which one they change', () => {
    expect(problems(() => load(two, { root: '/x' }))[0]).toMatch(/choose it with --snapshotter/);
    const c = load(two, { root: '/x', snapshotter: 'dm' }).config;
    expect(findInstance(c, 'dm').root).toBe('/x');
    expect(findInstance(c, 'blockfile').root).toBe('/var/lib/tsblock-blockfile');
  });

  it('findInstance explains an unknown or ambiguous choice', () => {
    const c = load(two).config;
    expect(() => findInstance(c)).toThrow(/several snapshotters are configured \(blockfile, dm\)/);
    expect(() => findInstance(c, 'nope')).toThrow(/no snapshotter named "nope"/);
  });

  it('shared sockets and nested roots are refused', () => {
    const bad = `
[snapshotters.a]
root = "/var/lib/t"
socket = "/run/t.sock"
[snapshotters.b]
root = "/var/lib/t/b"
socket = "/run/t.sock"
`;
    const p = problems(() => load(bad));
    expect(p).toEqual(expect.arrayContaining([
      expect.stringMatching(/a and b use the same socket/),
      expect.stringMatching(/a and b need separate roots/),
    ]));
  });
});

describe('config validation', () => {
  it('reports every problem at once', () => {
    const text = `
version = 2
log_level = "loud"
colour = "blue"
[metrics]
address = "nowhere"
port = 1
[snapshotters.tsblock]
backend = "zfs"
root = "relative"
socket = "also-relative"
base_size = "ten gigs"
mount_options = ["a,b"]
pool = "p"
socket_group = "wheel"
wat = 1
`;
    const p = problems(() => load(text));
    expect(p).toEqual(expect.arrayContaining([
      expect.stringMatching(/unknown key colour/),
      expect.stringMatching(/unknown key metrics.port/),
      expect.stringMatching(/unknown key snapshotters.tsblock.wat/),
      expect.stringMatching(/version must be 1/),
      expect.stringMatching(/log_level must be one of/),
      expect.stringMatching(/metrics address must be "host:port"/),
      expect.stringMatching(/backend must be one of blockfile, devmapper/),
      expect.stringMatching(/root must be an absolute path/),
      expect.stringMatching(/socket must be an absolute path/),
      expect.stringMatching(/base_size: cannot parse/),
      expect.stringMatching(/mount_options must be a list of single options/),
      expect.stringMatching(/socket_group must be a numeric gid/),
    ]));
    expect(p.length).toBeGreaterThanOrEqual(12);
  });

  it('devmapper-only settings on a blockfile snapshotter are named', () => {
    const p = problems(() => load('[snapshotters.x]\npool = "p"\ndata_size = "1G"\ndiscard = true\n'));
    expect(p).toEqual([
      expect.stringMatching(/x.pool only applies to the devmapper backend/),
      expect.stringMatching(/x.data_size only applies/),
      expect.stringMatching(/x.discard only applies/),
    ]);
  });

  it('a TOML syntax error names the file', () => {
    expect(problems(() => load('[snapshotters.x\n'))[0]).toMatch(/^\/etc\/tsblock\/test.toml: /);
  });

  it('socket activation addresses are accepted, ambiguous ones with several instances are not', () => {
    expect(load('[snapshotters.a]\nsocket = "fd://"\n').config.snapshotters[0]!.socket).toBe('fd://');
    expect(load('[snapshotters.a]\nsocket = "fd://tsblock"\n').config.snapshotters[0]!.socket).toBe('fd://tsblock');
    expect(problems(() => load('[snapshotters.a]\nsocket = "fd:/x"\n'))[0]).toMatch(/absolute path or fd:\/\//);
    expect(problems(() => load('[snapshotters.a]\nsocket = "fd://"\n[snapshotters.b]\nsocket="fd://"\n')).join('\n')).toMatch(/name each activated socket/);
  });

  it('host:port parsing', () => {
    expect(parseHostPort('127.0.0.1:9465')).toEqual({ host: '127.0.0.1', port: 9465 });
    expect(parseHostPort(':9465')).toEqual({ host: '0.0.0.0', port: 9465 });
    expect(parseHostPort('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(parseHostPort('localhost')).toBeUndefined();
    expect(parseHostPort('h:99999')).toBeUndefined();
  });
});

describe('config dump', () => {
  it('dumps the effective config as TOML that loads back to the same config', () => {
    const c = load('[snapshotters.a]\nbase_size = "1G"\n[snapshotters.b]\nbackend = "devmapper"\npool = "thin"\n', {}, { TSBLOCK_LOG_LEVEL: 'debug' }).config;
    const text = dumpConfig(c);
    expect(parse(text)).toMatchObject({ log_level: 'debug', snapshotters: { a: { base_size: 1024 ** 3 }, b: { backend: 'devmapper', pool: 'thin' } } });
    expect(load(text).config).toEqual({ ...c, metricsAddressExplicit: true });
  });
});

describe('content_dirs (where the Diff service reads layer blobs)', () => {
  it('is unset by default, so the Diff service uses containerd\'s default content store', () => {
    expect(load(undefined).config.snapshotters[0]!.contentDirs).toBeUndefined();
  });

  it('comes from the file, --content-dir (repeatable) and TSBLOCK_CONTENT_DIRS, in that order of precedence', () => {
    const file = '[snapshotters.tsblock]\ncontent_dirs = ["/var/lib/rancher/k3s/agent/containerd/io.containerd.content.v1.content"]\n';
    expect(load(file).config.snapshotters[0]!.contentDirs).toEqual(['/var/lib/rancher/k3s/agent/containerd/io.containerd.content.v1.content']);
    expect(load(file, { 'content-dir': ['/a/content', '/b/content'] }).config.snapshotters[0]!.contentDirs).toEqual(['/a/content', '/b/content']);
    expect(load(file, { 'content-dir': ['/a/content'] }, { TSBLOCK_CONTENT_DIRS: '/c/content:/d/content' }).config.snapshotters[0]!.contentDirs).toEqual(['/c/content', '/d/content']);
  });

  it('must be absolute paths, and dumps and loads back', () => {
    expect(problems(() => load('[snapshotters.tsblock]\ncontent_dirs = ["relative/content"]\n'))).toEqual([
      expect.stringMatching(/snapshotters\.tsblock\.content_dirs must be a list of absolute paths/),
    ]);
    const c = load('[snapshotters.tsblock]\ncontent_dirs = ["/x/content"]\n').config;
    expect(load(dumpConfig(c)).config.snapshotters[0]!.contentDirs).toEqual(['/x/content']);
  });
});
