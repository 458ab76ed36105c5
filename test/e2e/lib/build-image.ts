// build-image writes an e2e image as an OCI archive from the command line,
// for shell scripts (scripts/quickstart-check.sh). Node 20 cannot run .ts,
// so run it with vitest's vite-node:
//
//   node_modules/.bin/vite-node test/e2e/lib/build-image.ts -- hello --out F.tar [--ref REF] [--busybox PATH]
//   node_modules/.bin/vite-node test/e2e/lib/build-image.ts -- many --out F.tar [--layers 130] [--expect F.expected]
//
// Prints one JSON line: {"ref", "chainId", "layers"} (chainId: the top layer's).

import fs from 'node:fs';
import { busyboxMissing, helloImage, manyImage, writeImageArchive } from './images.js';

async function main(argv: string[]): Promise<number> {
  const args = argv[0] === '--' ? argv.slice(1) : argv;
  const kind = args.shift();
  const opt: Record<string, string> = {};
  while (args.length) {
    const k = args.shift()!;
    const v = args.shift();
    if (!k.startsWith('--') || v === undefined) {
      console.error(`build-image: bad argument ${k}`);
      return 2;
    }
    opt[k.slice(2)] = v;
  }
  if ((kind !== 'hello' && kind !== 'many') || !opt.out) {
    console.error('usage: build-image hello|many --out FILE [--ref REF] [--busybox PATH] [--layers N] [--expect FILE]');
    return 2;
  }
  const why = busyboxMissing(opt.busybox);
  if (why) {
    console.error(`build-image: ${why}`);
    return 1;
  }
  const img =
    kind === 'hello'
      ? await helloImage({ ref: opt.ref, busybox: opt.busybox })
      : await manyImage({ ref: opt.ref, busybox: opt.busybox, layers: opt.layers ? Number(opt.layers) : undefined });
  await writeImageArchive(img, opt.out);
  if (opt.expect && img.expected !== undefined) fs.writeFileSync(opt.expect, img.expected);
  console.log(JSON.stringify({ ref: img.ref, chainId: img.chainId, layers: img.layers.length }));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`build-image: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
