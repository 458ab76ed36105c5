package harness

import (
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the server under test: HARNESS_TEST_SERVER
// selects how it misbehaves; argv is ROOT SOCKET.
func TestMain(m *testing.M) {
	if mode := os.Getenv("HARNESS_TEST_SERVER"); mode != "" {
		serve(mode, os.Args[1], os.Args[2])
		return
	}
	os.Exit(m.Run())
}

func serve(mode, root, socket string) {
	if mode == "exit-early" {
		os.Exit(3)
	}
	if mode == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		os.Exit(4)
	}
	if mode == "tmp-leak" {
		_ = os.MkdirAll(filepath.Join(os.TempDir(), "tsblock-mnt-x"), 0o700)
	}
	if mode == "mount-leak" {
		mp := filepath.Join(root, "m")
		_ = os.MkdirAll(mp, 0o755)
		_ = syscall.Mount("tmpfs", mp, "tmpfs", 0, "size=1m")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() { <-sig; l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			break
		}
		c.Close()
	}
	os.Remove(socket)
	if mode == "ignore-term" {
		select {}
	}
}

func start(t *testing.T, mode string) (*Server, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "suite", "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return Start(Options{
		Command:        ShellQuote(exe) + " {root} {socket}",
		LogDir:         filepath.Join(dir, "logs"),
		StopTimeout:    time.Second,
		StartupTimeout: 10 * time.Second,
		Env:            []string{"HARNESS_TEST_SERVER=" + mode},
	}, "TestSuite/"+mode, root)
}

func TestCleanServer(t *testing.T) {
	s, err := start(t, "clean")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(s.LogPath, "/clean/server.log") {
		t.Errorf("log path %s: want one dir per case, named after the case", s.LogPath)
	}
	if err := s.Finish(); err != nil {
		t.Fatalf("a clean server was blamed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.LogPath), "server.pgid")); !os.IsNotExist(err) {
		t.Errorf("server.pgid left after the stop: %v", err)
	}
}

func TestServerExitingBeforeListening(t *testing.T) {
	if _, err := start(t, "exit-early"); err == nil || !strings.Contains(err.Error(), "exited before listening") {
		t.Fatalf("want an early-exit error, got %v", err)
	}
}

func TestServerIgnoringSIGTERMIsKilledAndFails(t *testing.T) {
	s, err := start(t, "ignore-term")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Finish()
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("want a SIGKILL error, got %v", err)
	}
	if syscall.Kill(-s.pgid, 0) != syscall.ESRCH {
		t.Fatalf("process group %d still alive", s.pgid)
	}
}

func TestFileLeftInTempDirIsALeak(t *testing.T) {
	s, err := start(t, "tmp-leak")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Finish()
	if err == nil || !strings.Contains(err.Error(), "tsblock-mnt-x left outside the root") {
		t.Fatalf("want a leak error naming the temp dir, got %v", err)
	}
}

func TestMountLeftUnderRootIsALeakAndReleased(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts a tmpfs)")
	}
	s, err := start(t, "mount-leak")
	if err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(s.Root, "m")
	deadline := time.Now().Add(5 * time.Second)
	for !mounted(t, mp) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	err = s.Finish()
	if err == nil || !strings.Contains(err.Error(), "mount "+resolved(mp)) {
		t.Fatalf("want a mount leak error, got %v", err)
	}
	if mounted(t, mp) {
		syscall.Unmount(mp, syscall.MNT_DETACH)
		t.Fatal("the leaked mount was not released")
	}
}

func mounted(t *testing.T, p string) bool {
	ms, err := Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Point == resolved(p) {
			return true
		}
	}
	return false
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b\134c`); got != `/a b\c` {
		t.Fatalf("unescape: %q", got)
	}
	if got := unescape(`/x\040`); got != "/x " {
		t.Fatalf("unescape at the end: %q", got)
	}
}
