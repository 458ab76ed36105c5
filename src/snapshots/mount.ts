// Mount is what containerd receives from Prepare/View/Mounts: it runs
// mount(2) with these fields (containerd/mount.Mount). `loop` in options is a
// containerd pseudo-option: containerd attaches a loop device itself.

/** Mount mirrors containerd.types.Mount. */
export interface Mount {
  type: string;
  source: string;
  /** target is a sub-path for containerd ≥ 2 mount managers; tsblock leaves it empty. */
  target?: string;
  options: string[];
}

/** isReadOnly tells whether a mount carries the `ro` option. */
export function isReadOnly(m: Mount): boolean {
  return m.options.includes('ro');
}
