// log builds the daemon's structured logger: JSON lines on stderr (pino), one
// record per event with the operation, the key and the duration where known.

import { pino, type Logger } from 'pino';
import type { CoreLogger, LogLevel } from '../base/log.js';

/** createLogger returns a pino logger writing JSON to stderr. */
export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({ level, base: { svc: 'tsblock' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
}

/** coreLogger adapts a pino logger to the core's small logging callback. */
export function coreLogger(log: Logger): CoreLogger {
  return (level, msg, fields) => log[level](fields ?? {}, msg);
}
