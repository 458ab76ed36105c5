// chain computes OCI chain IDs (image-spec config.md): the identity of a
// stack of layers, which is also the name containerd gives the committed
// snapshot holding that stack (rootfs/apply.go, unpacker.go).
//   ChainID(L0) = DiffID(L0)
//   ChainID(L0..Ln) = "sha256:" + hex(sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)))

import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../errdefs.js';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** assertDigest throws InvalidArgumentError unless d is "sha256:<64 hex>". */
export function assertDigest(d: string, what = 'digest'): void {
  if (!DIGEST.test(d)) throw new InvalidArgumentError(`${what} "${d}" is not sha256:<64 hex>`);
}

/** chainIds returns the chain ID of every prefix of diffIds (same length, in order). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    assertDigest(d, 'diffID');
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}
