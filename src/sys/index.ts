// sys is the barrel of tsblock's kernel verbs: everything with kernel side
// effects (loop devices, mounts, reflinks, locks, filesystem tools) that the
// core, backends and applier use. Device-mapper lives in ./dm.ts.

export * from './loop.js';
export * from './mount.js';
export * from './mount-options.js';
export * from './reflink.js';
export * from './blockdev.js';
export * from './fsinfo.js';
export * from './lock.js';
export * from './exec.js';
export { sleepSync } from './sleep.js';
