// Command refsnapshotter serves one of containerd's own snapshotters
// (overlayfs, native or blockfile, from containerd v2's plugins/snapshots)
// as a proxy snapshotter on a unix socket, through containerd's service
// adapter (contrib/snapshotservice). The benchmark's references
// (test/bench/lib/servers.mjs):
//
//	refsnapshotter --backend overlayfs|native|blockfile --root DIR --socket PATH
//
// blockfile needs a formatted scratch image: one is made with mkfs.ext4 under
// the root (--scratch-size, default 256M, sparse; lost+found removed with
// debugfs, as an image a layer is unpacked into must start empty). SIGTERM/SIGINT stop it and
// remove the socket.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/plugins/snapshots/blockfile"
	"github.com/containerd/containerd/v2/plugins/snapshots/native"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
	"google.golang.org/grpc"
)

func open(backend, root, scratchSize string) (snapshots.Snapshotter, error) {
	switch backend {
	case "overlayfs":
		return overlay.NewSnapshotter(root)
	case "native":
		return native.NewSnapshotter(root)
	case "blockfile":
		img := filepath.Join(root, "scratch.src")
		if _, err := os.Stat(img); err != nil {
			if err := os.MkdirAll(root, 0o700); err != nil {
				return nil, err
			}
			if out, err := exec.Command("truncate", "-s", scratchSize, img+".tmp").CombinedOutput(); err != nil {
				return nil, fmt.Errorf("truncate: %v: %s", err, out)
			}
			if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-E", "nodiscard", img+".tmp").CombinedOutput(); err != nil {
				return nil, fmt.Errorf("mkfs.ext4: %v: %s", err, out)
			}
			// a fresh ext4 has lost+found, which every layer would then carry
			// (the suite compares trees exactly): remove it, without mounting
			if out, err := exec.Command("debugfs", "-w", "-R", "rmdir lost+found", img+".tmp").CombinedOutput(); err != nil {
				return nil, fmt.Errorf("debugfs rmdir lost+found: %v: %s", err, out)
			}
			if err := os.Rename(img+".tmp", img); err != nil {
				return nil, err
			}
		}
		return blockfile.NewSnapshotter(root, blockfile.WithScratchFile(img), blockfile.WithFSType("ext4"))
	}
	return nil, fmt.Errorf("unknown backend %q (overlayfs, native, blockfile)", backend)
}

func main() {
	backend := flag.String("backend", "overlayfs", "overlayfs, native or blockfile")
	root := flag.String("root", "", "state directory")
	socket := flag.String("socket", "", "unix socket to listen on")
	scratchSize := flag.String("scratch-size", "256M", "blockfile: size of the scratch ext4 image (containerd's blockfile copies it whole for every new snapshot)")
	flag.Parse()
	if *root == "" || *socket == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: refsnapshotter --backend overlayfs|native|blockfile --root DIR --socket PATH")
		os.Exit(2)
	}
	sn, err := open(*backend, *root, *scratchSize)
	if err != nil {
		fmt.Fprintln(os.Stderr, "refsnapshotter:", err)
		os.Exit(1)
	}
	_ = os.Remove(*socket)
	l, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "refsnapshotter:", err)
		os.Exit(1)
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.GracefulStop()
	}()
	err = srv.Serve(l)
	_ = sn.Close()
	_ = os.Remove(*socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "refsnapshotter:", err)
		os.Exit(1)
	}
}
