package lab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one process a lab started: its role ("supervisor", "consul",
// "serve", "bmc-N", "qemu-N"), PID and start time (clock ticks after boot,
// /proc/PID/stat field 22). A PID whose start time differs is another
// process that reused the number.
type Proc struct {
	Role  string `json:"role"`
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// startTime reads /proc/PID/stat field 22; ok is false when the process is
// gone or a zombie (it runs nothing any more).
func startTime(pid int) (start uint64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// comm (field 2) may hold spaces and parentheses: fields 3.. follow the
	// last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, err == nil
}

// Alive reports whether p is still the process the lab started.
func (p Proc) Alive() bool {
	st, ok := startTime(p.PID)
	return ok && st == p.Start
}

// signal sends sig to p only if it is still the process the lab started.
func (p Proc) signal(sig syscall.Signal) bool {
	if !p.Alive() {
		return false
	}
	return syscall.Kill(p.PID, sig) == nil
}

// procLog is a lab's pids file: one "ROLE PID START" line per process,
// appended by Up and the supervisor.
type procLog struct {
	path string
	mu   sync.Mutex
}

// record appends the process pid as role, reading its start time now.
func (l *procLog) record(role string, pid int) (Proc, error) {
	st, ok := startTime(pid)
	if !ok {
		return Proc{}, fmt.Errorf("record %s (pid %d): the process is gone", role, pid)
	}
	p := Proc{Role: role, PID: pid, Start: st}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return p, fmt.Errorf("record %s: %w", role, err)
	}
	_, werr := fmt.Fprintf(f, "%s %d %d\n", p.Role, p.PID, p.Start)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return p, fmt.Errorf("record %s: %w", role, werr)
	}
	return p, nil
}

// readProcs reads a pids file; a missing file is no processes. Malformed
// lines (a write cut by a kill) are skipped.
func readProcs(path string) ([]Proc, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ps []Proc
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var p Proc
		if n, _ := fmt.Sscanf(sc.Text(), "%s %d %d", &p.Role, &p.PID, &p.Start); n == 3 && p.PID > 1 {
			ps = append(ps, p)
		}
	}
	return ps, sc.Err()
}

// latest returns, per role, the last recorded process.
func latest(ps []Proc) map[string]Proc {
	m := make(map[string]Proc, len(ps))
	for _, p := range ps {
		m[p.Role] = p
	}
	return m
}

// Procs reads the processes recorded in the state directory dir.
func Procs(dir string) ([]Proc, error) { return readProcs(filepath.Join(dir, PIDFile)) }

// waitGone waits until none of ps is alive, or the deadline.
func waitGone(ps []Proc, deadline time.Time) bool {
	for {
		alive := false
		for _, p := range ps {
			if p.Alive() {
				alive = true
				break
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
