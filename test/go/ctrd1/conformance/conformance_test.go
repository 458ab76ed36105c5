// Package conformance runs containerd 1.7's own snapshotter suite
// (snapshots/testsuite; the 2.x line moved it to core/snapshots/testsuite,
// see test/go/ctrd2) against a proxy snapshotter, through containerd's
// snapshots proxy client, with a fresh server per case (test/go/harness).
// scripts/conformance.sh --suite 1.7 drives it.
package conformance

import (
	"context"
	"fmt"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/defaults"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"github.com/containerd/log"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"tsblock.dev/test/harness"
)

var flags = harness.RegisterFlags()

// dial connects the way containerd 1.7 connects to a proxy plugin.
func dial(socket string) (*grpc.ClientConn, error) {
	bo := backoff.DefaultConfig
	bo.MaxDelay = 3 * time.Second
	return grpc.Dial(dialer.DialAddress(socket),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo}),
		grpc.WithContextDialer(dialer.ContextDialer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(defaults.DefaultMaxRecvMsgSize)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(defaults.DefaultMaxSendMsgSize)),
	)
}

// caseName is the suite's case (logtest puts t.Name() in the logger's fields).
func caseName(ctx context.Context, root string) string {
	if n, ok := log.G(ctx).Data["testcase"].(string); ok && n != "" {
		return n
	}
	return root
}

func TestSnapshotter(t *testing.T) {
	if why := flags.Missing(); why != "" && !*flags.List {
		if harness.RequireAll() {
			t.Fatalf("cannot run (CI=true or TSBLOCK_REQUIRE_ALL=1): %s", why)
		}
		t.Skip(why)
	}
	opts := flags.Options()
	name := *flags.Name
	testsuite.SnapshotterSuite(t, name, func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		if *flags.List {
			return nil, nil, harness.ListCase(caseName(ctx, root))
		}
		srv, err := harness.Start(opts, caseName(ctx, root), root)
		if err != nil {
			return nil, nil, err
		}
		log.G(ctx).Infof("harness: server for %s listening on %s (log %s; %v)", srv.Case, srv.Socket, srv.LogPath, srv.Notes)
		conn, err := dial(srv.Socket)
		if err != nil {
			return nil, nil, fmt.Errorf("dial %s: %w (%v)", srv.Socket, err, srv.Finish())
		}
		sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), name)
		cleanup := func() error {
			conn.Close()
			err := srv.Finish()
			log.G(ctx).Infof("harness: %v", srv.Notes)
			return err
		}
		return sn, cleanup, nil
	})
}
