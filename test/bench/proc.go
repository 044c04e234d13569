package main

import (
	"bytes"
	"context"
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

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every Linux
// architecture Go supports (reading it properly would need cgo's sysconf).
const clockTicks = 100

// proc is one child process: a rollup pipeline, the dev broker or a peer.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error        // Wait's error, valid once done is closed
	peak atomic.Int64 // VmHWM in kB, as last polled
}

// startProc starts bin with args in dir, env overriding the inherited environment. stdout and
// stderr both go to log unless stdout is set.
func startProc(name, dir, bin string, args []string, env map[string]string, stdin io.Reader, stdout, log io.Writer) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = dir, stdin, log, log
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v) // the last of duplicate keys wins
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	// VmHWM is polled until exit, so the peak of a process that exits on its own is known. wait4's
	// ru_maxrss cannot be used: the kernel folds into it the RSS of the pre-exec image, a fork of
	// this (large) bench process.
	go func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			p.peakKB()
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
	return p, nil
}

// peakKB reads VmHWM now (while the process runs) and returns the highest value seen.
func (p *proc) peakKB() int64 {
	if v := statusKB(p.cmd.Process.Pid, "VmHWM"); v > p.peak.Load() {
		p.peak.Store(v)
	}
	return p.peak.Load()
}

// cpuTicks is utime+stime of the process so far (fields 14 and 15 of /proc/<pid>/stat; the
// command name, field 2, may hold spaces, so count from its closing paren).
func (p *proc) cpuTicks() int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

// wait waits for the process to exit on its own, or stops it when ctx ends.
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.stop(time.Second)
		return ctx.Err()
	}
}

// stop sends SIGTERM, kills after grace, and returns the peak RSS in kB.
func (p *proc) stop(grace time.Duration) int64 {
	p.peakKB()
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	return p.peak.Load()
}

// cpu is utime+stime of the exited process's whole life, from wait4's rusage.
func (p *proc) cpu() float64 {
	if p.cmd.ProcessState == nil {
		return 0
	}
	ru := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func stopAll(ps []*proc) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { p.stop(20 * time.Second) })
	}
	wg.Wait()
}

func sumTicks(ps []*proc) (s int64) {
	for _, p := range ps {
		s += p.cpuTicks()
	}
	return s
}

// statusKB returns a "Vm...:  N kB" field of /proc/<pid>/status (VmHWM: peak RSS; VmRSS: now).
func statusKB(pid int, field string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
			return n
		}
	}
	return 0
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

// loadAvg is the machine's 1-minute load average (other work shares it).
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// cpuStat is the machine-wide "cpu" line of /proc/stat: idle (idle+iowait) and total ticks.
type cpuStat struct{ idle, total int64 }

func readCPUStat() (s cpuStat) {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	for i, v := range strings.Fields(line)[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i < 8 { // user nice system idle iowait irq softirq steal (guest is inside user)
			s.total += n
		}
		if i == 3 || i == 4 {
			s.idle += n
		}
	}
	return s
}

func (s cpuStat) idleSince(prev cpuStat) float64 {
	if s.total <= prev.total {
		return 0
	}
	return float64(s.idle-prev.idle) / float64(s.total-prev.total)
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
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.fn(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return l.w.Write(p)
}

// failOnExit cancels ctx, with the process's last log output as the cause, when any of ps exits
// before the returned stop is called: a pipeline that cannot start fails the run at once instead
// of leaving the bench waiting until its timeout.
func failOnExit(ctx context.Context, ps []*proc, logDir string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	quit := make(chan struct{})
	for _, p := range ps {
		go func() {
			select {
			case <-p.done:
				b, _ := os.ReadFile(filepath.Join(logDir, p.name+".log"))
				cancel(fmt.Errorf("%s exited early (%v): %s", p.name, p.err, bytes.TrimSpace(b[max(0, len(b)-600):])))
			case <-quit:
			case <-ctx.Done():
			}
		}()
	}
	var once sync.Once
	return ctx, func() { once.Do(func() { close(quit); cancel(nil) }) }
}
