package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process the bench started; stop ends it by its own pid.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *bufio.Reader // stdout, for roles that print
	in   io.WriteCloser
	done chan struct{}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	if p.in != nil {
		_ = p.in.Close()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startRole runs this binary in a role; logs go to dir/<name>.log.
func startRole(dir, name, role string, args ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startProc(dir, name, self, append([]string{"__role", role}, args...), nil)
}

// startProc runs bin with args and env (nil: this process's); its stderr
// goes to dir/<name>.log.
func startProc(dir, name, bin string, args []string, env []string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	// An os.Pipe rather than StdoutPipe: Wait closes a StdoutPipe as soon
	// as the child exits, and a role that prints its result and exits at
	// once would lose the race with our read ("file already closed").
	stdout, childOut, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = childOut
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	err = cmd.Start()
	childOut.Close()
	if err != nil {
		stdout.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: bufio.NewReaderSize(stdout, 1<<20), in: stdin, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

// line reads one line of the child's stdout, with a timeout.
func (p *proc) line(timeout time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := p.out.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case r := <-ch:
		if r.err != nil && r.s == "" {
			return "", fmt.Errorf("%s: %w (see its log)", p.name, r.err)
		}
		return r.s, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("%s: no output within %s", p.name, timeout)
	}
}

// startServerRole starts a role that announces "addr host:port".
func startServerRole(dir, name, role string, args ...string) (*proc, string, error) {
	p, err := startRole(dir, name, role, args...)
	if err != nil {
		return nil, "", err
	}
	l, err := p.line(30 * time.Second)
	if err != nil {
		p.stop()
		return nil, "", err
	}
	addr, ok := strings.CutPrefix(l, "addr ")
	if !ok {
		p.stop()
		return nil, "", fmt.Errorf("%s: unexpected first line %q", name, l)
	}
	return p, addr, nil
}

// waitHTTP polls url until it answers (any status) or timeout.
func waitHTTP(url string, timeout time.Duration, p *proc) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (see %s.log)", p.name, p.name)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer %s within %s", p.name, url, timeout)
}

// rssKB reads VmRSS of pid in KiB.
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// openFiles counts the descriptors pid has open.
func openFiles(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// nofile reads pid's soft RLIMIT_NOFILE from /proc/<pid>/limits.
func nofile(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(l, "Max open files"))
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("no open-files limit for pid %d", pid)
}

// cpuTicks is utime+stime of pid in clock ticks.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 13 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			return u + st
		}
	}
	return 0
}
