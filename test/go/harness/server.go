// Package harness starts and stops one snapshotter server per conformance
// case and checks, once it has stopped, that it left nothing behind: mounts,
// loop devices, device-mapper devices and files outside its root. It is
// shared by the conformance suites of every containerd line the tests pin
// (test/go/ctrd2, test/go/ctrd1) and uses the standard library only, so it
// builds against any of them.
package harness

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Options say how servers are started and what is checked afterwards.
type Options struct {
	// Command is run by /bin/sh -c with {root} and {socket} replaced
	// (shell-quoted); {case} is replaced by the case name.
	Command string
	// LogDir receives one directory per case: server.log, and server.pgid
	// while the server runs (so a runner can kill what a crashed test left).
	LogDir string
	// ScratchDir is where the per-case socket and TMPDIR directories are
	// made (default os.TempDir()). Keep it short: a unix socket path has at
	// most 107 bytes.
	ScratchDir string
	// StartupTimeout bounds the wait for the socket to accept (default 60 s).
	StartupTimeout time.Duration
	// StopTimeout is how long the server has after SIGTERM before SIGKILL (default 20 s).
	StopTimeout time.Duration
	// Umask the server starts with (default "022"; the suite itself runs with umask 0).
	Umask string
	// Env is added to the server's environment.
	Env []string
}

// Server is one running snapshotter process in its own process group.
type Server struct {
	Case    string
	Root    string // the snapshotter's --root
	Socket  string // where it listens
	LogPath string // its stdout and stderr
	// SuiteDir is the suite's per-case directory (the parent of Root); mounts
	// under SuiteDir/work are the suite's own, not the server's.
	SuiteDir string

	opts      Options
	scratch   string // holds the socket dir and the server's TMPDIR
	tmpDir    string
	sockDir   string
	cmd       *exec.Cmd
	pgid      int
	exited    chan struct{}
	waitErr   error
	logFile   *os.File
	dmBefore  map[string]bool
	stopped   bool
	Notes     []string // what happened on the way (startup time, SIGKILL…)
	startedAt time.Time
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// ShellQuote quotes s for /bin/sh.
func ShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Start launches a fresh server for one case, whose state must live under
// root, and returns once its socket accepts a connection.
func Start(opts Options, caseName, root string) (*Server, error) {
	if opts.Command == "" {
		return nil, errors.New("harness: no server command")
	}
	if opts.StartupTimeout == 0 {
		opts.StartupTimeout = 60 * time.Second
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 20 * time.Second
	}
	if opts.Umask == "" {
		opts.Umask = "022"
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	s := &Server{Case: caseName, Root: root, SuiteDir: filepath.Dir(root), opts: opts, exited: make(chan struct{})}
	s.dmBefore = dmNames()
	if s.scratch, err = os.MkdirTemp(opts.ScratchDir, "tsbh-"); err != nil {
		return nil, err
	}
	s.sockDir = filepath.Join(s.scratch, "s")
	s.tmpDir = filepath.Join(s.scratch, "tmp")
	for _, d := range []string{s.sockDir, s.tmpDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			os.RemoveAll(s.scratch)
			return nil, err
		}
	}
	s.Socket = filepath.Join(s.sockDir, "sock")
	logDir := opts.LogDir
	if logDir == "" {
		logDir = s.scratch
	}
	short := caseName
	if i := strings.LastIndex(short, "/"); i >= 0 {
		short = short[i+1:] // TestSnapshotter/Basic -> Basic
	}
	caseDir := filepath.Join(logDir, unsafeName.ReplaceAllString(short, "_"))
	if err := os.MkdirAll(caseDir, 0o755); err != nil {
		os.RemoveAll(s.scratch)
		return nil, err
	}
	s.LogPath = filepath.Join(caseDir, "server.log")
	if s.logFile, err = os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		os.RemoveAll(s.scratch)
		return nil, err
	}
	line := strings.NewReplacer("{root}", ShellQuote(root), "{socket}", ShellQuote(s.Socket), "{case}", ShellQuote(caseName)).Replace(opts.Command)
	fmt.Fprintf(s.logFile, "# harness: %s\n", line)
	script := "umask " + opts.Umask + "; "
	if f := strings.Fields(line); len(f) > 0 && !strings.Contains(f[0], "=") && !strings.ContainsAny(line, ";&|\n`$(") {
		// a simple command: exec it, so the group leader is the server and
		// its exit status is the server's
		script += "exec "
	}
	s.cmd = exec.Command("/bin/sh", "-c", script+line)
	s.cmd.Stdout = s.logFile
	s.cmd.Stderr = s.logFile
	// TMPDIR points into the scratch dir: whatever the server makes in its
	// temp dir and leaves there is found by the leak check.
	s.cmd.Env = append(append(os.Environ(), "TMPDIR="+s.tmpDir), opts.Env...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.startedAt = time.Now()
	if err := s.cmd.Start(); err != nil {
		s.logFile.Close()
		os.RemoveAll(s.scratch)
		return nil, fmt.Errorf("harness: starting %q: %w", line, err)
	}
	s.pgid = s.cmd.Process.Pid
	pgidFile := filepath.Join(caseDir, "server.pgid")
	_ = os.WriteFile(pgidFile, []byte(fmt.Sprintf("%d\n", s.pgid)), 0o644)
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(opts.StartupTimeout)
	for {
		if s.Exited() {
			err := fmt.Errorf("harness: server exited before listening on %s (%v)\n%s", s.Socket, s.waitErr, s.LogTail(30))
			return nil, errors.Join(err, s.Finish())
		}
		if c, err := net.DialTimeout("unix", s.Socket, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			err := fmt.Errorf("harness: server did not listen on %s within %s\n%s", s.Socket, opts.StartupTimeout, s.LogTail(30))
			return nil, errors.Join(err, s.Finish())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Notes = append(s.Notes, fmt.Sprintf("listening after %s", time.Since(s.startedAt).Round(time.Millisecond)))
	return s, nil
}

// Exited tells whether the server process has exited.
func (s *Server) Exited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "server log " + s.LogPath + ":\n" + strings.Join(lines, "\n")
}

// Stop sends SIGTERM to the server's process group, SIGKILL after the stop
// timeout, and waits until no process of the group is left. It returns an
// error when the server had to be killed or exited with a failure status.
func (s *Server) Stop() error {
	if s.stopped {
		return nil
	}
	s.stopped = true
	var errs []error
	if s.Exited() {
		errs = append(errs, fmt.Errorf("server exited during the case (%v)\n%s", s.waitErr, s.LogTail(30)))
	}
	_ = syscall.Kill(-s.pgid, syscall.SIGTERM)
	t0 := time.Now()
	if !waitGroupGone(s.pgid, s.exited, s.opts.StopTimeout) {
		_ = syscall.Kill(-s.pgid, syscall.SIGKILL)
		waitGroupGone(s.pgid, s.exited, 30*time.Second)
		errs = append(errs, fmt.Errorf("server did not exit within %s of SIGTERM: killed", s.opts.StopTimeout))
	}
	<-s.exited
	s.Notes = append(s.Notes, fmt.Sprintf("stopped in %s", time.Since(t0).Round(time.Millisecond)))
	if s.waitErr != nil && len(errs) == 0 && !killedBy(s.waitErr, syscall.SIGTERM) {
		errs = append(errs, fmt.Errorf("server exited with %v after SIGTERM\n%s", s.waitErr, s.LogTail(30)))
	}
	s.logFile.Close()
	_ = os.Remove(filepath.Join(filepath.Dir(s.LogPath), "server.pgid"))
	return errors.Join(errs...)
}

// Finish stops the server, then checks for leaks and releases them. The
// error lists every problem (server exit, SIGKILL, each leak); nil means a
// clean case.
func (s *Server) Finish() error {
	stopErr := s.Stop()
	leaks := s.ReleaseLeaks()
	os.RemoveAll(s.scratch)
	var errs []error
	if stopErr != nil {
		errs = append(errs, stopErr)
	}
	if len(leaks) > 0 {
		errs = append(errs, fmt.Errorf("left behind after the server stopped (released by the harness):\n  %s", strings.Join(leaks, "\n  ")))
	}
	return errors.Join(errs...)
}

// waitGroupGone waits until the process group has no member left (the
// leader is reaped by exec's Wait, signalled through exited).
func waitGroupGone(pgid int, exited <-chan struct{}, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		leaderGone := false
		select {
		case <-exited:
			leaderGone = true
		default:
		}
		if leaderGone && syscall.Kill(-pgid, 0) == syscall.ESRCH {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killedBy tells whether err is an exit by signal sig (the default action of
// SIGTERM is a clean way to stop).
func killedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}
