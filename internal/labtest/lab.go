// Package labtest is the QEMU test lab: a boot LAN in a network namespace of the
// test's own (bridge br0 at 192.0.2.1/24, a tap per VM), a real Consul dev
// agent with the inventory on it, bootserver.Server (what `ironrack
// serve` runs) with every protocol socket opened inside the namespace, the
// real discovery environment (images.Discovery: the Go agent as /init and
// Debian's kernel), and QEMU (TCG) machines that boot from that LAN —
// started directly, or powered on and off by an OpenIPMI ipmi_sim BMC
// (internal/ipmisim) whose chassis control starts and stops the VM.
//
// Nothing connects the namespace to a real interface. Everything the lab
// starts is stopped by PID when the test ends, before the namespace is
// deleted. Tests in provision, provision/bootserver, images, tiers and the
// Pulumi provider share it.
package labtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/bootserver"
	"github.com/ironrack/ironrack/provision/dhcp"
)

// The boot LAN's addresses.
const (
	Bridge     = "br0"
	ServerCIDR = "192.0.2.1/24"
	ServerIP   = "192.0.2.1"
)

// The boot LAN's IPv6 prefix and the server's address in it (Config.IPv6).
const (
	ServerCIDR6 = "2001:db8:b007::1/64"
	ServerIP6   = "2001:db8:b007::1"
)

// OVMFCode is the UEFI firmware QEMU runs for UEFI machines (Debian's ovmf).
const OVMFCode = "/usr/share/OVMF/OVMF_CODE.fd"

// Config configures a Lab. The zero value works.
type Config struct {
	// Tools are more programs the test needs in PATH (besides ip and
	// qemu-system-x86_64); a missing one fails the test.
	Tools []string
	// Sealer seals BMC passwords in the inventory. If nil, a random key
	// (AttachBMC stores the sims' passwords with it).
	Sealer *inventory.Sealer
	// IPv6 puts ServerCIDR6 on the bridge and runs stateful DHCPv6 (range
	// ::100-::1ff) beside DHCPv4, with the RA's M and O flags and router
	// lifetime 0 (`ironrack serve` without --ipv6-router).
	IPv6 bool
	// IPv6Only makes the boot LAN IPv6-only for its machines: as IPv6,
	// but the boot server serves no DHCPv4 (bootserver.Config.NoDHCP4,
	// `serve --no-dhcp4`), so nothing on the LAN is offered an IPv4 address.
	// The boot server keeps its IPv4 address on the bridge (bootserver
	// requires one; its HTTP server also listens there), which no machine
	// can use without an IPv4 address of its own.
	IPv6Only bool
	// BootConfig, if set, adjusts the boot server's config before it is
	// built (the lab fills in interface, address, range, data dir, store
	// and logger first).
	BootConfig func(*bootserver.Config)
}

// Lab is one boot LAN. Make it with New.
type Lab struct {
	T testing.TB
	// NS is the namespace with the bridge, the taps and the boot server's
	// sockets.
	NS *netns.NS
	// Consul is a client of the lab's Consul dev agent; ConsulAddr its
	// HTTP address.
	Consul     *api.Client
	ConsulAddr string
	// Store is the inventory on that Consul (Who "test").
	Store *inventory.Store
	// Data is the boot server's data dir (the discovery image is in
	// images/agent/current/).
	Data string
	// Discovery is the discovery image's version dir, shared by the test
	// binary's labs (read-only).
	Discovery string

	cfg  Config
	logs *syncBuffer

	bootMu     sync.Mutex
	boot       *bootserver.Server
	bootCancel context.CancelFunc
	bootWG     sync.WaitGroup

	mu   sync.Mutex
	taps int
}

// New builds the lab: it fails t if a privilege or tool is missing and
// skips it under -short (netns.Require).
func New(t testing.TB, cfg Config) *Lab {
	t.Helper()
	netns.Require(t, append([]string{"qemu-system-x86_64", "go"}, cfg.Tools...)...)
	disc := DiscoveryImage(t)
	agent := consuldev.T(t)
	client, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IPv6Only {
		cfg.IPv6 = true
	}
	if cfg.Sealer == nil {
		var key [32]byte
		if _, err := io.ReadFull(rand.Reader, key[:]); err != nil {
			t.Fatal(err)
		}
		cfg.Sealer = inventory.NewSealer(key)
	}
	l := &Lab{
		T: t, Consul: client, ConsulAddr: agent.Addr, Data: t.TempDir(), Discovery: disc, cfg: cfg,
		Store: inventory.New(client, inventory.Config{Who: "test", Sealer: cfg.Sealer}),
		logs:  &syncBuffer{},
	}
	for _, f := range []string{images.KernelFile, images.InitrdFile} {
		CopyFile(t, filepath.Join(disc, f), filepath.Join(images.AgentDir(l.Data), f))
	}
	l.NS = netns.New(t)
	l.NS.AddBridge(Bridge, ServerCIDR)
	if cfg.IPv6 {
		l.NS.Run("ip", "addr", "add", ServerCIDR6, "dev", Bridge, "nodad")
	}
	l.StartBootServer()
	t.Cleanup(func() {
		l.StopBootServer()
		if t.Failed() {
			t.Logf("boot server log:\n%s", l.LogTail(200))
		}
	})
	return l
}

// Logger is the lab's debug logger (the boot server's log, dumped when the
// test fails).
func (l *Lab) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Boot is the running boot server (nil while stopped).
func (l *Lab) Boot() *bootserver.Server {
	l.bootMu.Lock()
	defer l.bootMu.Unlock()
	return l.boot
}

// StartBootServer builds and starts the boot server inside the namespace.
// New starts it; a test that stopped it (StopBootServer) starts it again
// with this, as a restarted `ironrack serve` would be.
func (l *Lab) StartBootServer() {
	l.T.Helper()
	l.bootMu.Lock()
	defer l.bootMu.Unlock()
	if l.boot != nil {
		l.T.Fatal("lab: boot server already running")
	}
	cfg := bootserver.Config{
		DHCP: dhcp.Config{
			Interface:  Bridge,
			Address:    netip.MustParsePrefix(ServerCIDR),
			RangeFirst: netip.MustParseAddr("192.0.2.100"),
			RangeLast:  netip.MustParseAddr("192.0.2.199"),
			LeaseTime:  10 * time.Minute,
		},
		DataDir: l.Data,
		Store:   l.Store,
		Logger:  l.Logger(),
	}
	if l.cfg.IPv6 {
		cfg.DHCP6 = dhcp.Config6{
			Address:    netip.MustParsePrefix(ServerCIDR6),
			RangeFirst: netip.MustParseAddr("2001:db8:b007::100"),
			RangeLast:  netip.MustParseAddr("2001:db8:b007::1ff"),
			DNS:        []netip.Addr{netip.MustParseAddr(ServerIP6)},
			LeaseTime:  10 * time.Minute,
		}
	}
	if l.cfg.IPv6Only {
		cfg.NoDHCP4 = true
	}
	if l.cfg.BootConfig != nil {
		l.cfg.BootConfig(&cfg)
	}
	port := cfg.HTTPPort
	if port == 0 {
		port = 8080
	}
	boot, err := bootserver.New(cfg)
	if err != nil {
		l.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.boot, l.bootCancel = boot, cancel
	for _, p := range boot.Parts() {
		l.bootWG.Add(1)
		go func() {
			defer l.bootWG.Done()
			if err := l.NS.Do(func() error { return p.Serve(ctx) }); err != nil && ctx.Err() == nil {
				l.T.Errorf("lab: boot server %s: %v", p.Name, err)
			}
		}()
	}
	// Serve opens its sockets before it returns to Do's caller only for
	// some servers; wait until HTTP answers so a test that restarts the
	// server knows it is back.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := l.NS.Do(func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(ServerIP, strconv.Itoa(port)), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopBootServer stops every protocol server of the boot server and waits
// for them. Machines booting meanwhile see a dead server.
func (l *Lab) StopBootServer() {
	l.bootMu.Lock()
	cancel := l.bootCancel
	l.boot, l.bootCancel = nil, nil
	l.bootMu.Unlock()
	if cancel != nil {
		cancel()
		l.bootWG.Wait()
	}
}

// LogTail is the last n lines of the boot server's log.
func (l *Lab) LogTail(n int) string { return Tail(l.logs.String(), n) }

// WaitState waits (bounded by deadline) until the machine with mac is in
// state want, and returns it. The error names the state it is in and ends
// with v's console.
func (l *Lab) WaitState(v *VM, want inventory.State, deadline time.Time) (*inventory.Machine, error) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := l.Store.Find(ctx, v.Spec.MAC)
		cancel()
		if err == nil && m.State == want {
			return m, nil
		}
		if time.Now().After(deadline) {
			state := "not enlisted"
			if m != nil {
				state = string(m.State)
			} else if err != nil && !errors.Is(err, inventory.ErrNotFound) {
				state = err.Error()
			}
			return nil, fmt.Errorf("%s: still %s, want %s; console:\n%s", v.Spec.MAC, state, want, Tail(v.Console(), 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// History returns a machine's history entries as "what: why", oldest first.
func (l *Lab) History(id string) []string {
	l.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := l.Store.History(ctx, id)
	if err != nil {
		l.T.Fatal(err)
	}
	out := make([]string, 0, len(h))
	for _, e := range h {
		out = append(out, e.What+": "+e.Why)
	}
	return out
}

// HistoryHas reports whether an entry of the machine's history starts with
// what.
func (l *Lab) HistoryHas(id, what string) bool {
	for _, h := range l.History(id) {
		if strings.HasPrefix(h, what) {
			return true
		}
	}
	return false
}

// Machine puts a machine with mac and serial into state st the way the
// workflows would: enlist, commission, then the table's transitions. It
// returns the machine's ID.
func (l *Lab) Machine(ctx context.Context, mac, serial string, st inventory.State) string {
	l.T.Helper()
	m, _, err := l.Store.Enlist(ctx, inventory.Sighting{Serial: serial, MACs: []string{mac}, Source: "pxe"}, inventory.Change{})
	if err != nil {
		l.T.Fatal(err)
	}
	id := m.ID
	set := func(to inventory.State, by inventory.Actor) {
		l.T.Helper()
		if _, err := l.Store.SetState(ctx, id, to, by, inventory.Change{What: "state", Why: "test setup"}); err != nil {
			l.T.Fatal(err)
		}
	}
	switch st {
	case inventory.StateNew:
		return id
	case inventory.StateCommissioning:
		set(inventory.StateCommissioning, inventory.Operator)
		return id
	case inventory.StateFailedCommissioning:
		set(inventory.StateCommissioning, inventory.System)
		set(inventory.StateFailedCommissioning, inventory.System)
		return id
	}
	if _, err := l.Store.Commission(ctx, id, inventory.Facts{Serial: serial, CPUCores: 1, MemGB: 1, NICs: []inventory.NIC{{MAC: mac}}}, inventory.Change{}); err != nil {
		l.T.Fatal(err)
	}
	switch st {
	case inventory.StateDeployed:
		set(inventory.StateAllocated, inventory.System)
		set(inventory.StateDeploying, inventory.System)
		set(inventory.StateDeployed, inventory.System)
	case inventory.StateRetired:
		set(inventory.StateRetired, inventory.Operator)
	}
	return id
}

// CopyFile copies src to dst, creating dst's directory.
func CopyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
