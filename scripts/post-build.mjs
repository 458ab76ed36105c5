// Writes dist/cli.js, the `tsblock` executable named in package.json "bin".
// tsc emits the CLI at dist/src/cli/main.js (rootDir is the repo root so that
// src/ and ffi/ compile side by side); this shim keeps the public path stable.
import { chmodSync, writeFileSync } from 'node:fs';

writeFileSync('dist/cli.js', "#!/usr/bin/env node\nimport './src/cli/main.js';\n");
chmodSync('dist/cli.js', 0o755);
