// `tsblock config default|dump`: print the annotated default config file, or
// the effective configuration after every layer (file, flags, environment).

import { defaultConfigText, dumpConfig } from '../../config/index.js';
import { InvalidArgumentError } from '../../errdefs.js';
import { CONFIG_HELP, parseVerb, printJson, stdio, type Io } from '../common.js';

/** configUsage is `tsblock help config`. */
export const configUsage = `usage: tsblock config default | dump [options]

  default   print a commented config file to start /etc/tsblock/config.toml from
  dump      print the effective configuration (defaults < file < flags < env), validated

${CONFIG_HELP}`;

/** configCommand prints a config. */
export async function configCommand(argv: string[], io: Io = stdio): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'default') {
    io.out(defaultConfigText());
    return 0;
  }
  if (sub === 'dump') {
    const p = parseVerb(rest, {}, io);
    if (p.values.json) {
      const { metricsAddressExplicit: _, ...rest2 } = p.config;
      printJson(io, rest2);
    } else io.out(dumpConfig(p.config));
    return 0;
  }
  throw new InvalidArgumentError(`config: expected "default" or "dump", got ${JSON.stringify(sub ?? '')}`);
}
