package harness

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// Flags are the settings every conformance suite takes, as test flags
// (-tsblock.serve …) defaulting to environment variables, so that a
// prebuilt test binary and `go test` are driven the same way.
type Flags struct {
	Serve       *string
	Name        *string
	LogDir      *string
	Scratch     *string
	StopTimeout *time.Duration
	Startup     *time.Duration
	List        *bool
}

func envOr(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

func envDuration(k string, def time.Duration) time.Duration {
	if v := os.Getenv(k); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// RegisterFlags registers the suite flags on the default flag set (call it
// from a package-level var in the test package, before flag.Parse).
func RegisterFlags() *Flags {
	return &Flags{
		Serve: flag.String("tsblock.serve", os.Getenv("TSBLOCK_CONFORMANCE_SERVE"),
			"server command template, {root} and {socket} replaced (env TSBLOCK_CONFORMANCE_SERVE)"),
		Name: flag.String("tsblock.name", envOr("TSBLOCK_CONFORMANCE_NAME", "tsblock"),
			"snapshotter name: sent in every request (containerd sends the proxy plugin's name) and given to the suite"),
		LogDir: flag.String("tsblock.logdir", os.Getenv("TSBLOCK_CONFORMANCE_LOGDIR"),
			"directory for per-case server logs (default: a scratch dir, removed)"),
		Scratch: flag.String("tsblock.scratch", os.Getenv("TSBLOCK_CONFORMANCE_SCRATCH"),
			"directory for per-case sockets and server TMPDIRs (default $TMPDIR)"),
		StopTimeout: flag.Duration("tsblock.stop-timeout", envDuration("TSBLOCK_CONFORMANCE_STOP_TIMEOUT", 20*time.Second),
			"time a server has to exit after SIGTERM"),
		Startup: flag.Duration("tsblock.startup-timeout", envDuration("TSBLOCK_CONFORMANCE_STARTUP_TIMEOUT", 120*time.Second),
			"time a server has to accept on its socket"),
		List: flag.Bool("tsblock.list", false,
			"print the suite's case names (lines \"case NAME\") instead of running them; no server is started"),
	}
}

// Options turns the flags into harness options.
func (f *Flags) Options() Options {
	return Options{Command: *f.Serve, LogDir: *f.LogDir, ScratchDir: *f.Scratch, StopTimeout: *f.StopTimeout, StartupTimeout: *f.Startup}
}

// RequireAll tells whether missing prerequisites are failures (CI=true or
// TSBLOCK_REQUIRE_ALL=1) rather than skips.
func RequireAll() bool {
	return os.Getenv("CI") == "true" || os.Getenv("TSBLOCK_REQUIRE_ALL") == "1"
}

// Missing explains why the suite cannot run here ("" when it can).
func (f *Flags) Missing() string {
	var why []string
	if strings.TrimSpace(*f.Serve) == "" {
		why = append(why, "no server command (set TSBLOCK_CONFORMANCE_SERVE or -tsblock.serve)")
	}
	if os.Geteuid() != 0 {
		why = append(why, "needs root (the suite mounts what the snapshotter returns)")
	}
	if len(why) == 0 {
		return ""
	}
	return fmt.Sprint(strings.Join(why, "; "))
}

// ListCase prints a case name in list mode (the case then fails at once:
// the factory returns an error, no server is started).
func ListCase(name string) error {
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	fmt.Printf("case %s\n", name)
	return fmt.Errorf("list mode")
}
