package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/inventory"
)

// lockRoot takes the labs' lock (Root()/.lock): Up holds it while it
// claims a name and a subnet, Down while it tears a lab down.
func lockRoot() (unlock func(), err error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(root, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", root, err)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// CheckDataDir says, in one line, how to build the discovery image when
// dataDir lacks it.
func CheckDataDir(dataDir string) error {
	if _, err := images.Installed(dataDir, images.AgentImage, ""); err != nil {
		return fmt.Errorf("no discovery image in %s (%v); build it first: ironrack images build discovery --register=false --data-dir %s",
			dataDir, err, dataDir)
	}
	return nil
}

// Up starts the lab cfg describes: it claims the name (a lab of that name
// whose supervisor is dead is torn down first; a live one is an error) and
// a subnet, writes lab.json and the key file, starts the supervisor
// (supervisor is its argv, run in a session of its own so it outlives the
// caller), and waits until the supervisor says the lab is ready or fails,
// or timeout passes. On failure the lab is torn down (Down). It returns
// the configuration as saved.
func Up(ctx context.Context, cfg Config, supervisor []string, timeout time.Duration) (Config, error) {
	if err := cfg.Check(); err != nil {
		return cfg, err
	}
	if err := CheckDataDir(cfg.DataDir); err != nil {
		return cfg, err
	}
	dir, err := claim(&cfg)
	if err != nil {
		return cfg, err
	}
	fail := func(err error) (Config, error) {
		if derr := Down(cfg.Name); derr != nil {
			err = fmt.Errorf("%w (and tearing it down: %v)", err, derr)
		}
		return cfg, err
	}
	if _, err := inventory.LoadKeyFile(filepath.Join(dir, KeyFile), true); err != nil {
		return fail(err)
	}
	log, err := os.OpenFile(filepath.Join(dir, "supervisor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fail(err)
	}
	cmd := exec.Command(supervisor[0], supervisor[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	log.Close()
	if err != nil {
		return fail(fmt.Errorf("start the lab's supervisor: %w", err))
	}
	procs := &procLog{path: filepath.Join(dir, PIDFile)}
	sup, err := procs.record("supervisor", cmd.Process.Pid)
	// Reap it if it dies while Up waits; once Up returns it is init's.
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if err != nil {
		return fail(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(filepath.Join(dir, ReadyFile)); err == nil {
			return cfg, nil
		}
		if b, err := os.ReadFile(filepath.Join(dir, ErrorFile)); err == nil {
			return fail(errors.New(string(trimNL(b))))
		}
		select {
		case <-exited:
			if b, err := os.ReadFile(filepath.Join(dir, ErrorFile)); err == nil {
				return fail(errors.New(string(trimNL(b))))
			}
			return fail(fmt.Errorf("lab %s: the supervisor (pid %d) exited before the lab was ready: %s",
				cfg.Name, sup.PID, logTail(filepath.Join(dir, "supervisor.log"), 5)))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("lab %s: not ready within %v (see %s)", cfg.Name, timeout, dir))
		}
	}
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// claim takes the name and a subnet under the labs' lock and writes
// lab.json into a fresh state directory.
func claim(cfg *Config) (string, error) {
	unlock, err := lockRoot()
	if err != nil {
		return "", err
	}
	defer unlock()
	dir, err := Dir(cfg.Name)
	if err != nil {
		return "", err
	}
	if sup, ok := Supervising(dir); ok {
		return "", fmt.Errorf("lab %s is up (supervisor pid %d); `ironrack lab down --name %s` first, or pick another --name",
			cfg.Name, sup.PID, cfg.Name)
	}
	if err := down(cfg.Name); err != nil { // a dead or half-started lab of this name
		return "", fmt.Errorf("lab %s: cleaning up its dead predecessor: %w", cfg.Name, err)
	}
	taken, err := otherSubnets(cfg.Name)
	if err != nil {
		return "", err
	}
	if cfg.Subnet, err = chooseSubnet(cfg.Name, taken); err != nil {
		return "", err
	}
	_, host, _ := Names(cfg.Name)
	if linkExists(host) {
		return "", fmt.Errorf("lab %s: the host already has a link %s (another lab whose name hashes alike?); pick another --name", cfg.Name, host)
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	cfg.Secret = hex.EncodeToString(secret)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), append(b, '\n'), 0o600); err != nil {
		return "", err
	}
	return dir, nil
}

// otherSubnets are the subnets claimed by labs of other names.
func otherSubnets(name string) ([]netip.Prefix, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var ps []netip.Prefix
	for _, e := range ents {
		if !e.IsDir() || e.Name() == name || CheckName(e.Name()) != nil {
			continue
		}
		if c, _, err := Load(e.Name()); err == nil && c.Subnet.IsValid() {
			ps = append(ps, c.Subnet)
		}
	}
	return ps, nil
}

// Supervising returns the supervisor of the lab in dir if it is alive.
func Supervising(dir string) (Proc, bool) {
	ps, _ := Procs(dir)
	for _, p := range ps {
		if p.Role == "supervisor" && p.Alive() {
			return p, true
		}
	}
	return Proc{}, false
}

// Down tears the lab name down: it stops its supervisor (SIGTERM: it
// stops its children), then kills, by PID, every recorded process whose
// start time still matches and every process left in the lab's namespace,
// deletes the namespace (its bridge, taps and the veth with it) and the
// host's end of the veth, and removes the state directory. A lab that
// does not exist, or exists in part, is fine: Down is idempotent.
func Down(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	unlock, err := lockRoot()
	if err != nil {
		return err
	}
	defer unlock()
	return down(name)
}

func down(name string) error {
	dir, err := Dir(name)
	if err != nil {
		return err
	}
	ns, host, _ := Names(name)
	ps, err := Procs(dir)
	if err != nil {
		return fmt.Errorf("lab %s: read its processes: %w", name, err)
	}
	var sups, others []Proc
	for _, p := range ps {
		if p.Role == "supervisor" {
			sups = append(sups, p)
		} else {
			others = append(others, p)
		}
	}
	// The supervisor first, so it starts nothing more; it stops its
	// children itself when it can.
	for _, p := range sups {
		p.signal(syscall.SIGTERM)
	}
	if !waitGone(sups, time.Now().Add(15*time.Second)) {
		for _, p := range sups {
			p.signal(syscall.SIGKILL)
		}
		waitGone(sups, time.Now().Add(5*time.Second))
	}
	for _, p := range others {
		p.signal(syscall.SIGKILL)
	}
	// What runs in the lab's namespace is the lab's, recorded or not (a
	// child started by a supervisor killed before it wrote the record).
	if nsExists(ns) {
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
					if st, ok := startTime(pid); ok {
						p := Proc{Role: "in " + ns, PID: pid, Start: st}
						p.signal(syscall.SIGKILL)
						others = append(others, p)
					}
				}
			}
		}
	}
	if !waitGone(others, time.Now().Add(10*time.Second)) {
		return fmt.Errorf("lab %s: processes survive SIGKILL after 10s", name)
	}
	if nsExists(ns) {
		if err := ip("netns", "del", ns); err != nil {
			return fmt.Errorf("lab %s: %w", name, err)
		}
	}
	if linkExists(host) {
		if err := ip("link", "del", host); err != nil {
			return fmt.Errorf("lab %s: %w", name, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("lab %s: remove %s: %w", name, dir, err)
	}
	return nil
}
