// The import layers of src/ and ffi/, checked by dependency-cruiser
// (npm run lint:layers; test/unit/architecture/layers.test.ts runs it with
// the unit tests). A folder may import its own files and the folders on a
// LOWER floor, never one on its own floor or above, and no import cycle is
// allowed anywhere (type-only imports count: a type sits with its lowest
// user, not its highest). docs/architecture.md explains each floor.
//
// To move a module, move it to the floor of its highest *importer*'s
// dependencies, i.e. as low as its own imports allow.

import { fileURLToPath } from 'node:url';

/**
 * FLOORS lists the folders from the bottom up. `src/errdefs.ts` counts as
 * part of `base`. Folders on one floor are peers: they may not import each
 * other.
 */
export const FLOORS = [
  ['ffi'],
  ['base', 'proto'],
  ['snapshots'],
  ['sys'],
  ['storage'],
  ['core'],
  ['backends', 'apply'],
  ['config'],
  ['inspect'],
  ['server', 'metrics'],
  ['daemon', 'import'],
  ['cli'],
];

/** pathOf is the path pattern of a folder's modules (relative to the checked tree's root). */
function pathOf(folder) {
  if (folder === 'ffi') return '^ffi/';
  if (folder === 'base') return '^src/(base/|errdefs\\.ts$)';
  return `^src/${folder}/`;
}

const layerRules = FLOORS.flatMap((floor, i) =>
  floor.flatMap((folder) => {
    const notAllowed = FLOORS.slice(i).flat().filter((f) => f !== folder);
    if (notAllowed.length === 0) return []; // the top floor may import anything below it
    return {
      name: `layer-${folder}`,
      comment: `${folder} may import only folders on a lower floor (${FLOORS.slice(0, i).flat().join(', ') || 'none'}); see docs/architecture.md`,
      severity: 'error',
      from: { path: pathOf(folder) },
      to: { path: notAllowed.map(pathOf) },
    };
  }),
);

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'an import cycle: move the shared piece to a lower module (docs/architecture.md)',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'ffi-only-from-sys',
      comment: 'ffi/ holds raw bindings; only src/sys may import them (errno → typed errors happens there, sys/errno.ts)',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/sys/' },
      to: { path: '^ffi/' },
    },
    {
      name: 'no-unresolvable',
      comment: 'an import that does not resolve cannot be checked',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    ...layerRules,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // `import type` counts: a type in the wrong folder is a layering error too.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: fileURLToPath(new URL('./tsconfig.json', import.meta.url)) },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
    exclude: { path: ['node_modules', '^dist/'] },
  },
};
