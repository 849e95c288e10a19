// Package redistest starts real redis-server processes for tests.
//
// A server listens on a free 127.0.0.1 port, keeps nothing on disk
// (--save "" --appendonly no) and works in t.TempDir(). StartSentinel
// starts a primary, a replica and three Sentinels. When redis-server
// is not on PATH and the test runs as root on a system with apt-get, the
// Debian package redis-server is installed once per process. When it is
// still missing the test is skipped, or fails when the environment
// variable CI is "true".
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onepush/onepush/internal/caddyrig"
)

// Server is one redis-server process.
type Server struct {
	t     testing.TB
	bin   string
	dir   string
	port  int
	extra []string
	// conf, when set, is the config file a Sentinel starts from (see
	// sentinel.go); extra is then unused.
	conf func(port int) string

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{}
}

// Start starts a server for the test and returns its address.
func Start(t testing.TB) string {
	return StartServer(t).Addr()
}

// StartServer starts a server for the test; extra arguments are passed to
// redis-server (for example "--cluster-enabled", "yes"). The server is
// killed in t.Cleanup.
func StartServer(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := findRedis(t)
	s := &Server{t: t, bin: bin, dir: t.TempDir(), extra: extra}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := caddyrig.FreePort()
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		s.port = port
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("redistest: starting redis-server: %v", lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Kill stops the server at once (SIGKILL) and waits for it to exit. It is
// a no-op when the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exit := s.cmd, s.exit
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exit
}

// Dir is the server's working directory (its RDB and AOF files).
func (s *Server) Dir() string { return s.dir }

// Pause stops the process (SIGSTOP) without killing it: it neither
// answers nor replicates until Resume. A replica paused this way misses
// the writes its primary makes meanwhile.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Restart starts the server again on the same port (with an empty data
// set: nothing is persisted). It kills a running server first.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	// The port was ours a moment ago; retry briefly in case the kernel
	// has not released it yet.
	for i := 0; i < 50; i++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restarting redis-server on %s: %v", s.Addr(), err)
}

func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "warning",
		"--logfile", "",
		// A replica gets its first copy at once instead of after 5 s.
		"--repl-diskless-sync-delay", "0",
	}
	args = append(args, s.extra...)
	if s.conf != nil {
		file := filepath.Join(s.dir, "sentinel.conf")
		if err := os.WriteFile(file, []byte(s.conf(s.port)), 0o600); err != nil {
			return err
		}
		args = []string{file, "--sentinel"}
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	setDeathSignal(cmd)
	exit := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// The parent-death signal is tied to the thread that started the
		// child: keep that thread alive for the child's whole life.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err != nil {
			return
		}
		_ = cmd.Wait()
		close(exit)
	}()
	if err := <-started; err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(s.Addr()) == nil {
			break
		}
		select {
		case <-exit:
			return fmt.Errorf("redis-server exited: %s", strings.TrimSpace(out.String()))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exit
			return fmt.Errorf("redis-server on %s did not answer PING within 10s", s.Addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd, s.exit = cmd, exit
	s.mu.Unlock()
	return nil
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimSpace(line)
	// -NOAUTH: up, but started with --requirepass.
	if line != "+PONG" && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

var (
	installOnce sync.Once
	installLog  []string
)

// findRedis returns the redis-server binary, installing the Debian package
// when possible, or ends the test.
func findRedis(t testing.TB) string {
	t.Helper()
	if p, err := lookRedis(); err == nil {
		return p
	}
	installOnce.Do(install)
	for _, l := range installLog {
		t.Log(l)
	}
	if p, err := lookRedis(); err == nil {
		return p
	}
	msg := "redistest: redis-server not found (install the Debian package redis-server)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true, so this fails instead of skipping")
	}
	t.Skip(msg)
	return ""
}

func lookRedis() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/local/bin/redis-server"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func install() {
	logf := func(format string, args ...any) {
		installLog = append(installLog, fmt.Sprintf("redistest: "+format, args...))
	}
	if os.Geteuid() != 0 {
		logf("redis-server missing and not running as root: not installing")
		return
	}
	aptGet, err := exec.LookPath("apt-get")
	if err != nil {
		logf("redis-server missing and apt-get not found: not installing")
		return
	}
	run := func(args ...string) error {
		logf("running %s %s", aptGet, strings.Join(args, " "))
		// Other test binaries may be installing at the same moment (the
		// browser tests install chromium): wait for dpkg's lock.
		cmd := exec.Command(aptGet, append([]string{"-o", "DPkg::Lock::Timeout=600"}, args...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			tail := string(out)
			if len(tail) > 2000 {
				tail = tail[len(tail)-2000:]
			}
			logf("%s %s failed: %v\n%s", aptGet, args[0], err, tail)
		}
		return err
	}
	start := time.Now()
	if run("install", "-y", "--no-install-recommends", "redis-server") != nil {
		if run("update") == nil {
			_ = run("install", "-y", "--no-install-recommends", "redis-server")
		}
	}
	if p, err := lookRedis(); err == nil {
		logf("installed %s in %s", p, time.Since(start).Round(time.Millisecond))
	}
}
