// names are the backend and store-mode names the config and the flags accept,
// kept apart from the backends themselves so that reading a config (and
// `tsblock serve` before its socket answers) loads no backend code.

/** BACKENDS are the names `--backend` accepts. */
export const BACKENDS = ['blockfile', 'devmapper'] as const;
/** BackendName is one of BACKENDS. */
export type BackendName = (typeof BACKENDS)[number];

/** isBackendName narrows a string to a BackendName. */
export function isBackendName(s: string): s is BackendName {
  return (BACKENDS as readonly string[]).includes(s);
}

/** STORE_MODES are the values of the blockfile `store` setting. */
export const STORE_MODES = ['auto', 'direct', 'xfs-file'] as const;
/** StoreMode is one of STORE_MODES. */
export type StoreMode = (typeof STORE_MODES)[number];
