package lab

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/redfishsim"
	"github.com/ironrack/ironrack/ipmi"
)

// Supervisor is the process that owns a lab's children (`ironrack lab
// supervise`): it builds the network, starts Consul, the BMCs (ipmi_sim, or
// `ironrack lab redfish-bmc` for Redfish machines) and the boot
// server, writes the rack sheet and the ready file, then starts and stops
// each machine's QEMU as its BMC's chassis power asks, until ctx ends.
type Supervisor struct {
	// Name is the lab's name; its state directory must hold lab.json.
	Name string
	// Logger receives the supervisor's log. If nil, logs are discarded.
	Logger *slog.Logger
	// ReadyTimeout bounds each wait for a child to answer. If 0, 60s.
	ReadyTimeout time.Duration

	cfg   Config
	dir   string
	l     Layout
	procs *procLog
	log   *slog.Logger

	mu       sync.Mutex
	children map[string]*child
}

// child is a running process of the lab.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Serve runs the lab until ctx ends, then stops its children and returns
// nil. A failure to bring the lab up is written to the state directory's
// error file (Up prints it) and returned. Down removes the network and the
// state directory.
func (s *Supervisor) Serve(ctx context.Context) error {
	s.log = s.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.ReadyTimeout == 0 {
		s.ReadyTimeout = 60 * time.Second
	}
	cfg, dir, err := Load(s.Name)
	if err != nil {
		return err
	}
	s.cfg, s.dir, s.l = cfg, dir, cfg.Layout()
	s.procs = &procLog{path: filepath.Join(dir, PIDFile)}
	s.children = map[string]*child{}
	if _, err := s.procs.record("supervisor", os.Getpid()); err != nil {
		return err
	}
	defer s.stopAll()
	if err := s.bringUp(ctx); err != nil {
		err = fmt.Errorf("lab %s: %w", s.Name, err)
		_ = os.WriteFile(filepath.Join(dir, ErrorFile), []byte(err.Error()+"\n"), 0o600)
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ReadyFile), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return err
	}
	s.log.Info("lab: ready", "name", s.Name, "consul", s.ConsulAddr(), "machines", len(s.l.Machines))
	s.followPower(ctx)
	return nil
}

// ConsulAddr is the lab's Consul HTTP address, reachable from the host.
func (s *Supervisor) ConsulAddr() string {
	return net.JoinHostPort(s.l.Server.String(), strconv.Itoa(ConsulPort))
}

func (s *Supervisor) bringUp(ctx context.Context) error {
	if err := buildNetwork(s.l); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if _, err := s.start("consul", []string{"ip", "netns", "exec", s.l.NS, s.cfg.Consul, "agent", "-dev",
		"-node", "lab-" + s.Name, "-bind", s.l.Server.String(), "-client", "127.0.0.1 " + s.l.Server.String(),
		"-http-port", strconv.Itoa(ConsulPort), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-log-level", "warn"}); err != nil {
		return err
	}
	client, err := api.NewClient(&api.Config{Address: s.ConsulAddr()})
	if err != nil {
		return err
	}
	if err := s.await(ctx, "consul", "Consul at "+s.ConsulAddr()+" has a leader", func(ctx context.Context) error {
		leader, err := client.Status().Leader()
		if err == nil && leader == "" {
			err = errors.New("no leader yet")
		}
		return err
	}); err != nil {
		return err
	}
	m, err := images.Installed(s.cfg.DataDir, images.AgentImage, "")
	if err != nil {
		return fmt.Errorf("discovery image: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = (&images.Catalog{KV: client.KV()}).Register(rctx, m)
	cancel()
	if err != nil {
		return fmt.Errorf("register the discovery image in the lab's Consul: %w", err)
	}

	roots, err := s.writeBMCs()
	if err != nil {
		return err
	}
	ctl := &ipmi.Controller{Timeout: 3 * time.Second}
	for _, m := range s.l.Machines {
		role := fmt.Sprintf("bmc-%d", m.Index)
		if err := s.await(ctx, role, "BMC "+m.BMC.String()+" answers "+m.Protocol(), func(ctx context.Context) error {
			_, err := ctl.PowerStatus(ctx, bmcCredentials(m, roots))
			return err
		}); err != nil {
			return err
		}
	}

	boot := net.JoinHostPort(s.l.Server.String(), strconv.Itoa(BootPort))
	if _, err := s.start("serve", []string{"ip", "netns", "exec", s.l.NS, s.cfg.Binary,
		"--consul", s.ConsulAddr(), "--key-file", filepath.Join(s.dir, KeyFile), "--log-level", "info",
		"serve", "--interface", s.l.Bridge, "--address", s.l.Server.String() + "/24",
		"--dhcp-range", s.l.DHCPFirst.String() + "-" + s.l.DHCPLast.String(),
		"--http-port", strconv.Itoa(BootPort), "--data-dir", s.cfg.DataDir}); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	if err := s.await(ctx, "serve", "the boot server at "+boot+" answers HTTP", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+boot+"/", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}); err != nil {
		return err
	}
	return writeSheet(filepath.Join(s.dir, SheetFile), s.l.Machines)
}

// writeBMCs writes every machine's BMC files and starts its BMC. With
// Redfish machines it first makes the lab's CA (its key stays in memory),
// writes its certificate as BMCCAFile and returns it as a pool.
func (s *Supervisor) writeBMCs() (*x509.CertPool, error) {
	var ca *redfishsim.CA
	if s.cfg.Redfish > 0 {
		var err error
		if ca, err = redfishsim.NewCA("ironrack lab " + s.Name + " BMC CA"); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(s.dir, BMCCAFile), ca.PEM(), 0o644); err != nil {
			return nil, err
		}
	}
	for _, m := range s.l.Machines {
		if err := writeMachine(s.dir, m); err != nil {
			return nil, fmt.Errorf("machine %d: %w", m.Index, err)
		}
		argv := bmcArgv(s.dir, s.l, m)
		if m.Redfish {
			if err := writeRedfish(s.dir, m, ca); err != nil {
				return nil, fmt.Errorf("machine %d: %w", m.Index, err)
			}
			argv = redfishArgv(s.dir, s.l, s.cfg, m)
		}
		if _, err := s.start(fmt.Sprintf("bmc-%d", m.Index), argv); err != nil {
			return nil, err
		}
	}
	if ca == nil {
		return nil, nil
	}
	return ca.Pool(), nil
}

// bmcCredentials are how the lab itself reaches m's BMC (readiness,
// status): Redfish ones verified against the lab's CA.
func bmcCredentials(m Machine, roots *x509.CertPool) ipmi.Credentials {
	c := ipmi.Credentials{Host: m.BMC.String(), Username: m.BMCUser, Password: m.BMCPassword, Protocol: ipmi.ProtocolIPMI}
	if m.Redfish {
		c.Protocol, c.Port, c.TLS = ipmi.ProtocolRedfish, RedfishPort, ipmi.TLS{Roots: roots}
	}
	return c
}

// start starts argv as role, its output into the state directory's
// ROLE.log, and records it.
func (s *Supervisor) start(role string, argv []string) (*child, error) {
	out, err := os.OpenFile(filepath.Join(s.dir, role+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", role, argv[0], err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	s.children[role] = c
	s.mu.Unlock()
	if _, err := s.procs.record(role, cmd.Process.Pid); err != nil {
		s.log.Warn("lab: could not record a child", "role", role, "err", err)
	}
	go func() {
		err := cmd.Wait()
		close(c.done)
		s.log.Info("lab: child exited", "role", role, "pid", cmd.Process.Pid, "err", err)
	}()
	return c, nil
}

// await polls check until it succeeds, the child role exits (its log's
// tail is the error), or ReadyTimeout passes.
func (s *Supervisor) await(ctx context.Context, role, what string, check func(context.Context) error) error {
	s.mu.Lock()
	c := s.children[role]
	s.mu.Unlock()
	deadline := time.Now().Add(s.ReadyTimeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("waiting until %s: %s exited: %s", what, role, logTail(filepath.Join(s.dir, role+".log"), 5))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not happen within %v: %v", what, s.ReadyTimeout, err)
		}
	}
}

// followPower follows every machine's power requests until ctx ends:
// "on" starts its QEMU unless it runs, "off" kills it (a pulled plug),
// "reset" does both. A machine that powers itself off reads off on its
// BMC.
func (s *Supervisor) followPower(ctx context.Context) {
	offsets := make([]int64, len(s.l.Machines))
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		for i, m := range s.l.Machines {
			for _, req := range readNew(filepath.Join(machineDir(s.dir, m), "requests"), &offsets[i]) {
				s.power(m, req)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Supervisor) power(m Machine, req string) {
	role := fmt.Sprintf("qemu-%d", m.Index)
	s.mu.Lock()
	c := s.children[role]
	s.mu.Unlock()
	running := c != nil && !closed(c.done)
	if (req == "off" || req == "reset") && running {
		_ = c.cmd.Process.Kill()
		<-c.done
		running = false
	}
	if req == "off" || running {
		return
	}
	c, err := s.start(role, qemuArgv(s.dir, s.l, m))
	if err != nil {
		s.log.Error("lab: power on", "machine", m.Serial, "err", err)
		_ = os.WriteFile(filepath.Join(machineDir(s.dir, m), "power"), []byte("0\n"), 0o644)
		return
	}
	go func() {
		<-c.done
		// A QEMU that ended while still the machine's current one (the
		// guest powered off, or it crashed) leaves the machine off; one
		// replaced by a reset does not.
		s.mu.Lock()
		current := s.children[role] == c
		s.mu.Unlock()
		if current {
			_ = os.WriteFile(filepath.Join(machineDir(s.dir, m), "power"), []byte("0\n"), 0o644)
		}
	}()
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// readNew returns the complete lines appended to path since *off.
func readNew(path string, off *int64) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(*off, io.SeekStart); err != nil {
		return nil
	}
	var lines []string
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return lines // a partial line is read again next time
		}
		*off += int64(len(line))
		lines = append(lines, strings.TrimSpace(line))
	}
}

// stopAll stops every child: QEMU and the boot server first, Consul last.
// SIGTERM, then SIGKILL after 5 s.
func (s *Supervisor) stopAll() {
	s.mu.Lock()
	var first, last []*child
	for role, c := range s.children {
		if role == "consul" {
			last = append(last, c)
		} else {
			first = append(first, c)
		}
	}
	s.mu.Unlock()
	for _, group := range [][]*child{first, last} {
		for _, c := range group {
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range group {
			select {
			case <-c.done:
			case <-time.After(5 * time.Second):
				_ = c.cmd.Process.Kill()
				<-c.done
			}
		}
	}
}

// Vendor and Model go into the rack sheet: QEMU's i440FX PC, in the
// characters a sheet accepts (discovery records the SMBIOS strings).
const (
	Vendor = "QEMU"
	Model  = "StandardPC-i440FX"
)

// writeSheet writes the machines' rack sheet as `inventory import` reads
// it.
func writeSheet(path string, ms []Machine) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"rack", "slot", "serial", "bmc_address", "bmc_username", "bmc_password", "macs", "vendor", "model", "bmc_protocol"})
	for _, m := range ms {
		_ = w.Write([]string{m.Rack, strconv.Itoa(m.Slot), m.Serial, m.BMC.String(), m.BMCUser, m.BMCPassword, m.MAC, Vendor, Model, m.Protocol()})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// logTail is the last n lines of the file at path.
func logTail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
