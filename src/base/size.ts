// parseSize reads human sizes as operators write them in flags and config:
// "10G", "10GiB", "512M", "1T", "4096" (bytes). Powers of 1024 throughout,
// as for block devices.

import { InvalidArgumentError } from '../errdefs.js';

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** parseSize returns bytes, or throws InvalidArgumentError naming `what`. */
export function parseSize(input: string | number, what = 'size'): number {
  if (typeof input === 'number') {
    if (Number.isSafeInteger(input) && input > 0) return input;
    throw new InvalidArgumentError(`${what} must be a positive whole number of bytes, got ${input}`);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(input);
  if (!m) throw new InvalidArgumentError(`${what}: cannot parse ${JSON.stringify(input)} (examples: 10G, 512MiB, 4096)`);
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new InvalidArgumentError(`${what} out of range: ${input}`);
  return bytes;
}

/** formatSize renders bytes for people: "1.5 GiB". */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
