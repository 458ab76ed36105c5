// update holds the rules of containerd's Update for a snapshot's labels:
// which field paths may change, how "labels" and "labels.<key>" combine, and
// that an empty value deletes a label. The core runs it inside the write
// transaction of CoreSnapshotter.update.

import { InvalidArgumentError } from '../errdefs.js';
import { validateLabels } from '../snapshots/labels.js';

/**
 * updatedLabels returns the labels snapshot `name` has after an Update that
 * gives `given` with `fieldpaths`: none replaces every label, "labels" does
 * the same, "labels.<key>" sets (or, with no value, deletes) one label; any
 * other path is an InvalidArgumentError and changes nothing.
 */
export function updatedLabels(name: string, current: Record<string, string>, given: Record<string, string>, fieldpaths: readonly string[]): Record<string, string> {
  let next: Record<string, string>;
  if (fieldpaths.length === 0) {
    next = { ...given };
  } else {
    next = { ...current };
    for (const path of fieldpaths) {
      if (path.startsWith('labels.')) {
        next[path.slice('labels.'.length)] = given[path.slice('labels.'.length)] ?? '';
      } else if (path === 'labels') {
        next = { ...given };
      } else {
        throw new InvalidArgumentError(`cannot update ${JSON.stringify(path)} field on snapshot ${JSON.stringify(name)}`);
      }
    }
  }
  for (const [k, v] of Object.entries(next)) if (v === '') delete next[k];
  validateLabels(next);
  return next;
}
