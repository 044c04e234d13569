package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It is 100 on every
// Linux architecture Go supports (the kernel fixes it for the ABI), and reading it properly
// would need cgo's sysconf.
const clockTicks = 100

// proc is one child process: a rollup pipeline, the dev broker or the seed peer.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error        // Wait's error, valid once done is closed
	peak atomic.Int64 // VmHWM in kB, as last polled
}

// startProc starts bin with args in dir. env entries override the inherited environment.
// Output goes to out (stdout and stderr together) unless stdout is set.
func startProc(name, dir, bin string, args []string, env map[string]string, stdin io.Reader, stdout, out io.Writer) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = mergeEnv(os.Environ(), env)
	cmd.Stdin = stdin
	cmd.Stdout = out
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	go p.watchPeak()
	return p, nil
}

// watchPeak polls VmHWM until the process exits, so the peak of a process that exits on its own
// is known. wait4's ru_maxrss cannot be used: the kernel folds into it the RSS of the mm the
// child had before exec, which is a fork of this (large) bench process.
func (p *proc) watchPeak() {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if v := p.statusKB("VmHWM"); v > p.peak.Load() {
			p.peak.Store(v)
		}
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

// peakKB is the highest VmHWM seen so far (read now as well while the process runs).
func (p *proc) peakKB() int64 {
	if !p.exited() {
		if v := p.statusKB("VmHWM"); v > p.peak.Load() {
			p.peak.Store(v)
		}
	}
	return p.peak.Load()
}

func mergeEnv(base []string, over map[string]string) []string {
	out := make([]string, 0, len(base)+len(over))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := over[k]; !ok {
			out = append(out, kv)
		}
	}
	for k, v := range over {
		out = append(out, k+"="+v)
	}
	return out
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cpuTicks is utime+stime of the process so far, from /proc/<pid>/stat.
func (p *proc) cpuTicks() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields we want follow its closing paren.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", p.pid())
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", p.pid(), len(f))
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return ut + st, nil
}

// statusKB returns a "Vm...:  N kB" field of /proc/<pid>/status (VmHWM is the peak RSS).
func (p *proc) statusKB(field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// stop sends SIGTERM, waits up to grace, then kills. It returns the peak RSS in kB (VmHWM) and
// the CPU seconds of the whole life of the process (wait4's rusage).
func (p *proc) stop(grace time.Duration) (peakKB int64, cpu float64) {
	peakKB = p.peakKB()
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	return max(peakKB, p.peak.Load()), p.cpu()
}

// cpu is utime+stime of the exited process, from wait4's rusage.
func (p *proc) cpu() float64 {
	if p.cmd.ProcessState == nil {
		return 0
	}
	ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// sumTicks is the CPU ticks of all of ps.
func sumTicks(ps []*proc) int64 {
	var s int64
	for _, p := range ps {
		t, _ := p.cpuTicks()
		s += t
	}
	return s
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// loadAvg is the 1-minute load average of the machine (other work shares it).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return f[0]
}

// lineWatch is an io.Writer that copies to w and calls fn with each complete line.
type lineWatch struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
	fn  func(line string)
}

func (l *lineWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w != nil {
		if _, err := l.w.Write(p); err != nil {
			return 0, err
		}
	}
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.fn(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// failOnExit cancels ctx (with the process's last output as the cause) when any of ps exits
// before stop is called, so a pipeline that cannot start fails the run at once instead of
// leaving the bench waiting for answers until its timeout.
func failOnExit(ctx context.Context, ps []*proc, logDir string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	quit := make(chan struct{})
	for _, p := range ps {
		go func() {
			select {
			case <-p.done:
				tail := ""
				if b, err := os.ReadFile(filepath.Join(logDir, p.name+".log")); err == nil {
					tail = string(b[max(0, len(b)-600):])
				}
				cancel(fmt.Errorf("%s exited early (%v): %s", p.name, p.err, strings.TrimSpace(tail)))
			case <-quit:
			case <-ctx.Done():
			}
		}()
	}
	var once sync.Once
	return ctx, func() { once.Do(func() { close(quit); cancel(nil) }) }
}
