/**
 * base is the private containerd 2.x's own settings for the CRI tests
 * (paths under dir, the sandbox image, the local registry's hosts dir, CNI
 * dirs, no NRI); the tsblock parts come from the deploy file or the docs.
 */
export function baseConfig(dir: string, pause: string, hosts: string): string {
  return [
    'version = 3',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    '[grpc]',
    `  address = "${dir}/containerd.sock"`,
    '[ttrpc]',
    `  address = "${dir}/containerd.sock.ttrpc"`,
    '[debug]',
    `  address = "${dir}/debug.sock"`,
    '  level = "info"',
    // NRI's default socket is machine-wide (/var/run/nri/nri.sock): off for a private containerd
    "[plugins.'io.containerd.nri.v1.nri']",
    '  disable = true',
    "[plugins.'io.containerd.cri.v1.images'.pinned_images]",
    `  sandbox = "${pause}"`,
    "[plugins.'io.containerd.cri.v1.images'.registry]",
    `  config_path = "${hosts}"`,
    "[plugins.'io.containerd.cri.v1.runtime'.cni]",
    `  bin_dirs = ["${dir}/cni-bin"]`,
    `  conf_dir = "${dir}/cni-conf"`,
    // this host denies lowering oom_score_adj (no CAP_SYS_RESOURCE): CRI's -998 for
    // sandboxes makes runc fail ("can't get final child's PID from pipe"); keep
    // containers' oom_score_adj at or above containerd's own
    "[plugins.'io.containerd.cri.v1.runtime']",
    '  restrict_oom_score_adj = true',
    "[plugins.'io.containerd.grpc.v1.cri']",
    '  stream_server_address = "127.0.0.1"',
    '',
  ].join('\n');
}
