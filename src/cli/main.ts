// tsblock's command-line entry: `tsblock <verb> [options]`. Each verb lives in
// commands/<verb>.ts and returns an exit status.

import { serveCommand, serveUsage } from './commands/serve.js';
import { configCommand, configUsage } from './commands/config.js';
import { lsCommand, lsUsage } from './commands/ls.js';
import { infoCommand, infoUsage } from './commands/info.js';
import { usageCommand, usageUsage } from './commands/usage.js';
import { rmCommand, rmUsage } from './commands/rm.js';
import { gcCommand, gcUsage } from './commands/gc.js';
import { doctorCommand, doctorUsage } from './commands/doctor.js';
import { poolCommand, poolUsage } from './commands/pool.js';
import { importCommand, importUsage } from './commands/import.js';
import { diffCommand, diffUsage } from './commands/diff.js';
import { errorMessage } from '../errdefs.js';

type Command = { run: (argv: string[]) => Promise<number>; summary: string; usage?: string };

const commands: Record<string, Command> = {
  import: { run: importCommand, summary: 'unpack an OCI archive/layout into committed snapshots named by chain ID', usage: importUsage },
  diff: { run: diffCommand, summary: 'export a snapshot\'s changes as an OCI layer tar (whiteouts for deletions)', usage: diffUsage },
  serve: { run: serveCommand, summary: 'run the snapshotter daemon (every configured snapshotter)', usage: serveUsage },
  ls: { run: lsCommand, summary: 'list snapshots: key, parent, kind, size, usage, file/device', usage: lsUsage },
  info: { run: infoCommand, summary: 'show one snapshot in full', usage: infoUsage },
  usage: { run: usageCommand, summary: 'space per snapshot and in total; root and pool fill', usage: usageUsage },
  rm: { run: rmCommand, summary: 'remove snapshots (through the daemon when it runs)', usage: rmUsage },
  gc: { run: gcCommand, summary: 'find (and with --yes reclaim) storage no snapshot owns', usage: gcUsage },
  doctor: { run: doctorCommand, summary: 'check kernel features, tools, sockets, store and pool; say what to fix', usage: doctorUsage },
  pool: { run: poolCommand, summary: 'devmapper thin-pool: create | status', usage: poolUsage },
  config: { run: configCommand, summary: 'print the default config, or dump the effective one', usage: configUsage },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: tsblock <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun "tsblock help <command>" or "tsblock <command> --help" for a command's options.\n`;
}

async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === 'help' && rest[0] !== undefined && commands[rest[0]]) {
    const c = commands[rest[0]]!;
    process.stdout.write(c.usage ?? `${c.summary}\n`);
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
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(cmd.usage ?? `${cmd.summary}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest);
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
