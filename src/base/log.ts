// log holds the two logging types every layer shares. The logger itself
// (pino, JSON on stderr) is built by the daemon (src/daemon/log.ts); the
// layers below only see CoreLogger, a plain callback, so they stay free of
// pino and of the daemon.

/** LogLevel is a record's severity; it is also what --log-level accepts. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** CoreLogger receives one structured record per notable event. */
export type CoreLogger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;
