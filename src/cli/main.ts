// tsblock's command-line entry: `tsblock <verb> [options]`. Each verb lives in
// commands/<verb>.ts and returns an exit status.

import { errorMessage } from '../errdefs.js';

/**
 * CommandModule is what a verb's module exports, loaded only when that verb
 * runs: `serve` must not pay (in start-up time and resident memory) for the
 * applier, the OCI importer or the inspection verbs it never calls.
 */
interface CommandModule {
  run: (argv: string[]) => Promise<number>;
  usage?: string;
}

type Command = { load: () => Promise<CommandModule>; summary: string };

const commands: Record<string, Command> = {
  import: {
    summary: 'unpack an OCI archive/layout into committed snapshots named by chain ID',
    load: async () => { const m = await import('./commands/import.js'); return { run: m.importCommand, usage: m.importUsage }; },
  },
  diff: {
    summary: 'export a snapshot\'s changes as an OCI layer tar (whiteouts for deletions)',
    load: async () => { const m = await import('./commands/diff.js'); return { run: m.diffCommand, usage: m.diffUsage }; },
  },
  serve: {
    summary: 'run the snapshotter daemon (every configured snapshotter)',
    load: async () => { const m = await import('./commands/serve.js'); return { run: m.serveCommand, usage: m.serveUsage }; },
  },
  ls: {
    summary: 'list snapshots: key, parent, kind, size, usage, file/device',
    load: async () => { const m = await import('./commands/ls.js'); return { run: m.lsCommand, usage: m.lsUsage }; },
  },
  info: {
    summary: 'show one snapshot in full',
    load: async () => { const m = await import('./commands/info.js'); return { run: m.infoCommand, usage: m.infoUsage }; },
  },
  usage: {
    summary: 'space per snapshot and in total; root and pool fill',
    load: async () => { const m = await import('./commands/usage.js'); return { run: m.usageCommand, usage: m.usageUsage }; },
  },
  rm: {
    summary: 'remove snapshots (through the daemon when it runs)',
    load: async () => { const m = await import('./commands/rm.js'); return { run: m.rmCommand, usage: m.rmUsage }; },
  },
  gc: {
    summary: 'find (and with --yes reclaim) storage no snapshot owns',
    load: async () => { const m = await import('./commands/gc.js'); return { run: m.gcCommand, usage: m.gcUsage }; },
  },
  doctor: {
    summary: 'check kernel features, tools, sockets, store and pool; say what to fix',
    load: async () => { const m = await import('./commands/doctor.js'); return { run: m.doctorCommand, usage: m.doctorUsage }; },
  },
  pool: {
    summary: 'devmapper thin-pool: create | status',
    load: async () => { const m = await import('./commands/pool.js'); return { run: m.poolCommand, usage: m.poolUsage }; },
  },
  config: {
    summary: 'print the default config, or dump the effective one',
    load: async () => { const m = await import('./commands/config.js'); return { run: m.configCommand, usage: m.configUsage }; },
  },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: tsblock <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun "tsblock help <command>" or "tsblock <command> --help" for a command's options.\n`;
}

async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === 'help' && rest[0] !== undefined && commands[rest[0]]) {
    const c = commands[rest[0]]!;
    process.stdout.write((await c.load()).usage ?? `${c.summary}\n`);
    return 0;
  }
  if (!verb || verb === '--help' || verb === '-h' || verb === 'help') {
    process.stdout.write(usage());
    return verb ? 0 : 2;
  }
  const cmd = commands[verb];
  if (!cmd) {
    process.stderr.write(`tsblock: unknown command ${JSON.stringify(verb)}\n\n${usage()}`);
    return 2;
  }
  const mod = await cmd.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(mod.usage ?? `${cmd.summary}\n`);
    return 0;
  }
  try {
    return await mod.run(rest);
  } catch (err) {
    process.stderr.write(`tsblock ${verb}: ${errorMessage(err)}\n`);
    return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`tsblock: ${errorMessage(err)}\n`);
    process.exitCode = 1;
  },
);
