// tsblock's command-line entry: `tsblock <verb> [options]`. Each verb lives in
// commands/<verb>.ts and returns an exit status.

import { serveCommand, serveUsage } from './commands/serve.js';
import { errorMessage } from '../errdefs.js';

type Command = { run: (argv: string[]) => Promise<number>; summary: string; usage?: string };

const commands: Record<string, Command> = {
  serve: { run: serveCommand, summary: 'run the snapshotter daemon on a unix socket', usage: serveUsage },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: tsblock <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun "tsblock <command> --help" for a command's options.\n`;
}

async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
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
