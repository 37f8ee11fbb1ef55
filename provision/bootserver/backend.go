package bootserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision/dhcp"
	"github.com/ironrack/ironrack/provision/ipxe"
)

// Image tags. Until the image catalog exists (issue 5), a deployed machine
// names its image with two tags, and the image's files are found in the
// data dir by convention (see Backend.image).
const (
	TagImage        = "image"
	TagImageVersion = "image_version"
)

// bootServer is recorded as Who in the history entries the boot server writes.
const bootServer = "boot-server"

// Backend adapts *inventory.Store to the interfaces of the protocol
// servers: dhcp.LeaseStore, dhcp.Reservations, dhcp.Enlister,
// httpboot.Machines, httpboot.BootRecorder, httpboot.Tokens,
// httpboot.Reports, httpboot.Deploys and httpboot.HostKeys. It holds no state of its own beyond what it is given.
type Backend struct {
	// Store is the inventory. Required.
	Store *inventory.Store
	// DataDir is the boot server's data dir, where deployed images' files
	// are looked up (DATA/images/<name>/<version>/). If empty, a deployed
	// machine boots its local disk.
	DataDir string
	// BaseURL is the boot HTTP server's base URL, for the NoCloud seed on a
	// deployed OS's command line. If empty, none is added.
	BaseURL string
	// HostCertLifetime is how long the host certificates signed when a
	// deployed machine reports its host keys are valid. If 0,
	// hostkeys.DefaultCertLifetime (1 year).
	HostCertLifetime time.Duration
	// Shed makes the lease group commit drop leases that could no longer
	// be answered within 1 s of their request (see Config.Shed).
	Shed bool
	// BaseURL6 is the boot HTTP server's IPv6 base URL, used instead of
	// BaseURL for a machine whose ip is IPv6 (an IPv6-only machine). If
	// empty, BaseURL.
	BaseURL6 string
	// Logger receives logs. If nil, logs are discarded.
	Logger *slog.Logger

	once     sync.Once
	leases   *batcher[inventory.Lease, error]
	leases6  *batcher[inventory.Lease, error]
	reserved *batcher[string, reservationResult]
	recent   reservationCache
	macs     *macReplica
}

// leaseMaxWait sheds leases past saturation: a lease whose DHCP request
// could no longer be answered within this long of its arrival (its age
// when its group commit is made, plus the last commit's duration) is not
// written (dhcp.ErrStale: no reply). That is a client's first
// retransmission (iPXE, perfdhcp's drop time); on an idle server a
// request is milliseconds old here and nothing is shed.
const leaseMaxWait = time.Second

func staleLease() error {
	return fmt.Errorf("lease not written: it could not be answered within %v of its request: %w", leaseMaxWait, dhcp.ErrStale)
}

type reservationResult struct {
	ip    netip.Addr
	owned bool
	err   error
}

func (a *Backend) init() {
	a.once.Do(func() {
		a.leases = &batcher[inventory.Lease, error]{call: a.Store.StoreLeases, inFlight: 4}
		a.leases6 = &batcher[inventory.Lease, error]{call: a.Store.StoreLeases6, inFlight: 4}
		if a.Shed {
			a.leases.maxWait, a.leases.stale = leaseMaxWait, staleLease
			a.leases6.maxWait, a.leases6.stale = leaseMaxWait, staleLease
		}
		a.reserved = &batcher[string, reservationResult]{call: a.reservations, inFlight: 2}
		a.macs = &macReplica{store: a.Store, log: a.log()}
	})
}

// ServeMACReplica keeps this adapter's copy of the MAC index (see
// macReplica) until ctx is done; the boot server runs it in authoritative
// mode. Without it running, every lookup reads Consul.
func (a *Backend) ServeMACReplica(ctx context.Context) error {
	a.init()
	return a.macs.Serve(ctx)
}

// unowned reports whether mac is known to belong to no machine: from the
// MAC index replica, or a lookup moments ago.
func (a *Backend) unowned(mac string, now time.Time) bool {
	if owned, known := a.macs.owned(mac); known {
		return !owned
	}
	return a.recent.unowned(mac, now)
}

func (a *Backend) log() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

// Leases implements dhcp.LeaseStore.
func (a *Backend) Leases(ctx context.Context) ([]dhcp.Lease, error) {
	ls, err := a.Store.Leases(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]dhcp.Lease, 0, len(ls))
	for _, l := range ls {
		mac, err := net.ParseMAC(l.MAC)
		if err != nil {
			a.log().Warn("bootserver: skipping stored lease with a malformed MAC", "mac", l.MAC, "ip", l.IP)
			continue
		}
		ip, err := netip.ParseAddr(l.IP)
		if err != nil {
			a.log().Warn("bootserver: skipping stored lease with a malformed IP", "mac", l.MAC, "ip", l.IP)
			continue
		}
		out = append(out, dhcp.Lease{MAC: mac, IP: ip.Unmap(), Expires: l.Expires, Hostname: l.Hostname})
	}
	return out, nil
}

// StoreLease implements dhcp.LeaseStore: the lease is committed to Consul
// (with the machine's ip when the MAC is a machine's) before it returns,
// group-committed with the leases of concurrent requests.
func (a *Backend) StoreLease(ctx context.Context, l dhcp.Lease) error {
	a.init()
	mac := l.MAC.String()
	err := a.leases.do(ctx, inventory.Lease{
		MAC: mac, IP: l.IP.String(), Expires: l.Expires.UTC(), Hostname: l.Hostname,
		NoMachine: a.unowned(mac, time.Now()),
	})
	if err == nil {
		a.recent.leased(mac, l.IP)
	}
	if errors.Is(err, inventory.ErrAddressInUse) {
		return fmt.Errorf("%w: %v", dhcp.ErrAddressInUse, err)
	}
	return err
}

// Leases6 is the dhcp.LeaseStore of the DHCPv6 server: leases under
// leases6/<mac> (inventory.Store.Leases6, StoreLease6), each committed
// before its Reply.
func (a *Backend) Leases6() dhcp.LeaseStore { return leases6{a} }

type leases6 struct{ a *Backend }

func (l leases6) Leases(ctx context.Context) ([]dhcp.Lease, error) {
	ls, err := l.a.Store.Leases6(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]dhcp.Lease, 0, len(ls))
	for _, s := range ls {
		mac, err := net.ParseMAC(s.MAC)
		ip, perr := netip.ParseAddr(s.IP)
		if err != nil || perr != nil || !ip.Is6() {
			l.a.log().Warn("bootserver: skipping malformed stored DHCPv6 lease", "mac", s.MAC, "ip", s.IP)
			continue
		}
		out = append(out, dhcp.Lease{MAC: mac, IP: ip, Expires: s.Expires, Hostname: s.Hostname})
	}
	return out, nil
}

// StoreLease commits the lease before it returns, group-committed with the
// v6 leases of concurrent requests (inventory.StoreLeases6).
func (l leases6) StoreLease(ctx context.Context, s dhcp.Lease) error {
	l.a.init()
	mac := s.MAC.String()
	return l.a.leases6.do(ctx, inventory.Lease{MAC: mac, IP: s.IP.String(), Expires: s.Expires.UTC(), Hostname: s.Hostname,
		NoMachine: l.a.unowned(mac, time.Now())})
}

// find returns the machine with mac, or nil when none has it.
func (a *Backend) find(ctx context.Context, mac net.HardwareAddr) (*inventory.Machine, error) {
	m, err := a.Store.Find(ctx, mac.String())
	switch {
	case errors.Is(err, inventory.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("look up MAC %s: %w", mac, err)
	}
	return m, nil
}

// Reservation implements dhcp.Reservations: a machine that has the MAC and
// an ip in the inventory keeps that ip. (The ip is set by the operator's
// rack sheet, or by an earlier lease, which makes leases sticky.) The
// lookups of concurrent requests share one read (inventory.Reservations),
// and a lookup is reused for reservationTTL (3 s), so a REQUEST does not
// read the inventory again right after its DISCOVER.
func (a *Backend) Reservation(ctx context.Context, mac net.HardwareAddr) (netip.Addr, error) {
	a.init()
	key, now := mac.String(), time.Now()
	if owned, known := a.macs.owned(key); known && !owned {
		return netip.Addr{}, nil // no machine has it: nothing to read
	}
	if r, ok := a.recent.get(key, now); ok {
		return r.ip, nil
	}
	r := a.reserved.do(ctx, key)
	if r.err == nil {
		a.recent.put(key, cachedReservation{ip: r.ip, owned: r.owned}, now)
	}
	return r.ip, r.err
}

func (a *Backend) reservations(ctx context.Context, macs []string) []reservationResult {
	out := make([]reservationResult, len(macs))
	res, err := a.Store.Reservations(ctx, macs)
	for i, mac := range macs {
		if err != nil {
			out[i].err = fmt.Errorf("reservation of %s: %w", mac, err)
			continue
		}
		r, ok := res[mac]
		out[i].owned = ok
		if ok && r.IP != "" {
			ip, perr := netip.ParseAddr(r.IP)
			if perr != nil {
				a.log().Warn("bootserver: machine has a malformed ip; no reservation", "mac", mac, "ip", r.IP)
				continue
			}
			out[i].ip = ip.Unmap()
		}
	}
	return out
}

// EnlistPXE implements dhcp.Enlister: an unknown MAC becomes a machine in
// state new with source=pxe.
func (a *Backend) EnlistPXE(ctx context.Context, mac net.HardwareAddr) error {
	_, err := a.enlist(ctx, mac)
	return err
}

func (a *Backend) enlist(ctx context.Context, mac net.HardwareAddr) (*inventory.Machine, error) {
	m, err := a.find(ctx, mac)
	if err != nil || m != nil {
		return m, err
	}
	m, created, err := a.Store.Enlist(ctx, inventory.Sighting{MACs: []string{mac.String()}, Source: "pxe"},
		inventory.Change{What: "enlist", Why: "network boot from an unknown MAC " + mac.String(), Who: bootServer})
	if err != nil {
		return nil, fmt.Errorf("enlist MAC %s: %w", mac, err)
	}
	a.init()
	a.macs.add(mac.String())
	a.recent.enlisted(mac.String())
	if created {
		a.log().Info("bootserver: enlisted a new machine", "machine", m.ID, "mac", mac.String())
	}
	return m, nil
}

// MachineByMAC implements httpboot.Machines. A MAC the inventory does not
// know is enlisted here too (a script request is a network boot, and in
// proxyDHCP mode the DHCP server may not have seen the client), so every
// agent boot carries a machine ID and a fresh boot token. Tokens are issued
// only for the boots that start the agent.
func (a *Backend) MachineByMAC(ctx context.Context, mac net.HardwareAddr) (ipxe.Machine, error) {
	m, err := a.enlist(ctx, mac)
	if err != nil {
		return ipxe.Machine{}, err
	}
	out := ipxe.Machine{ID: m.ID, MAC: mac.String(), State: string(m.State)}
	if out.State == ipxe.StateDeployed {
		out.Image = a.deployedImage(ctx, m)
	}
	if m.State == inventory.StateReleasing {
		// The release's erase level; without a spec (released before
		// erase levels), quick.
		switch r, err := a.Store.ReleaseSpec(ctx, m.ID); {
		case err == nil:
			out.Erase = r.Erase
		case !errors.Is(err, inventory.ErrNotFound):
			return ipxe.Machine{}, err
		}
	}
	if ipxe.Decide(out).Action == ipxe.ActionAgent {
		tok, err := a.Store.IssueBootToken(ctx, m.ID)
		if err != nil {
			return ipxe.Machine{}, fmt.Errorf("boot token for %s: %w", m.ID, err)
		}
		out.Token = tok
	}
	return out, nil
}

// image is a deployed machine's image: its tags name it; its files are found
// in images.Dir (vmlinuz, optional initrd.img, optional one-line cmdline,
// else images.DefaultCmdline). No tags, or no vmlinuz there, means the image installed
// a bootloader: the machine boots its local disk.
func (a *Backend) image(m *inventory.Machine) ipxe.Image {
	img := ipxe.Image{Name: m.Tags[TagImage], Version: m.Tags[TagImageVersion]}
	if img.Name == "" || img.Version == "" || a.DataDir == "" ||
		!safeSegment(img.Name) || !safeSegment(img.Version) {
		return ipxe.Image{}
	}
	dir := images.Dir(a.DataDir, img.Name, img.Version)
	if !regular(filepath.Join(dir, images.KernelFile)) {
		return img // no kernel: local disk
	}
	img.Kernel = images.KernelFile
	if regular(filepath.Join(dir, images.InitrdFile)) {
		img.Initrd = images.InitrdFile
	}
	img.Cmdline = images.DefaultCmdline
	if b, err := os.ReadFile(filepath.Join(dir, images.CmdlineFile)); err == nil {
		if line := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]); line != "" {
			img.Cmdline = line
		}
	}
	return img
}

func safeSegment(s string) bool {
	return s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}

func regular(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// RecordBoot implements httpboot.BootRecorder: every boot lands in the
// machine's history with what it was handed.
func (a *Backend) RecordBoot(ctx context.Context, m ipxe.Machine, d ipxe.Decision) error {
	if m.ID == "" {
		return nil
	}
	what := "boot " + string(d.Action)
	if d.Mode != "" {
		what += " " + d.Mode
	}
	return a.Store.NoteBoot(ctx, m.ID, what, fmt.Sprintf("network boot of %s: %s", m.MAC, d.Why))
}

// VerifyBootToken implements httpboot.Tokens.
func (a *Backend) VerifyBootToken(ctx context.Context, token string) (string, bool, error) {
	id, err := a.Store.VerifyBootToken(ctx, token)
	switch {
	case errors.Is(err, inventory.ErrToken):
		return "", false, nil
	case err != nil:
		return "", false, err
	}
	return id, true, nil
}

// RecordReport implements httpboot.Reports. Facts of a machine in state
// new, commissioning or failed_commissioning commission it (→ ready, with
// the facts); facts in any other state are compared with the record, and
// the differences are flagged as drift (inventory.RecordDrift). A failed
// commission event moves a commissioning machine to failed_commissioning;
// deploy and wipe results end those workflows (recordEvent); other
// events are noted in its history.
func (a *Backend) RecordReport(ctx context.Context, id string, r wire.Report) error {
	switch r.Kind {
	case "facts":
		return a.recordFacts(ctx, id, r.Facts)
	case "event":
		e := r.Event
		why := e.Status
		if e.Percent > 0 {
			why += fmt.Sprintf(" %d%%", e.Percent)
		}
		if e.Message != "" {
			why += ": " + e.Message
		}
		switch e.Phase {
		case "commission":
			return a.commissionEvent(ctx, id, e, why)
		default:
			return a.recordEvent(ctx, id, e)
		}
	}
	return fmt.Errorf("report kind %q", r.Kind)
}

// commissionEvent notes a commission event; a failed one moves a
// commissioning machine to failed_commissioning, with the agent's reason
// in the same history entry. In any other state the event is only noted.
func (a *Backend) commissionEvent(ctx context.Context, id string, e *wire.Event, why string) error {
	change := inventory.Change{What: "agent commission", Why: why, Who: bootServer}
	m, err := a.Store.Update(ctx, id, inventory.System, change, func(m *inventory.Machine) error {
		if e.Status == "failed" && m.State == inventory.StateCommissioning {
			m.State = inventory.StateFailedCommissioning
		}
		return nil
	})
	if err == nil && m.State == inventory.StateFailedCommissioning && e.Status == "failed" {
		a.log().Warn("bootserver: commissioning failed", "machine", id, "reason", e.Message)
	}
	return err
}

func (a *Backend) recordFacts(ctx context.Context, id string, f *wire.Facts) error {
	facts := FactsFromReport(f)
	m, err := a.Store.Get(ctx, id)
	if err != nil {
		return err
	}
	switch m.State {
	case inventory.StateNew, inventory.StateCommissioning, inventory.StateFailedCommissioning:
		if _, err := a.Store.Commission(ctx, id, facts, inventory.Change{
			What: "commission", Why: "facts from the discovery agent", Who: bootServer,
		}); err != nil {
			return fmt.Errorf("commission %s: %w", id, err)
		}
		a.log().Info("bootserver: commissioned", "machine", id, "serial", facts.Serial,
			"cpu_cores", facts.CPUCores, "mem_gb", facts.MemGB, "disks", len(facts.Disks))
		return nil
	}
	if err := facts.Validate(); err != nil {
		// Not retryable, and not worth failing the agent's deploy or wipe
		// over: the history says why the report was not compared.
		return a.Store.NoteBoot(ctx, id, "facts", fmt.Sprintf("agent facts in state %s not compared with the record: %v", m.State, err))
	}
	m, err = a.Store.RecordDrift(ctx, id, facts, inventory.Change{
		Who: bootServer, Why: fmt.Sprintf("agent facts in state %s", m.State),
	})
	if err != nil {
		return fmt.Errorf("facts of %s: %w", id, err)
	}
	if len(m.Drift) > 0 {
		a.log().Warn("bootserver: hardware drift", "machine", id, "differences", len(m.Drift))
	}
	return nil
}

// GiB is 2^30 bytes.
const GiB = 1 << 30

// FactsFromReport converts an agent's facts to the inventory's. mem_gb is
// memory_bytes rounded up to whole GiB: the busybox agent reports the
// kernel's MemTotal, which is a little less than the installed memory.
// Vendor and product become NodeMeta, so a string the inventory does not
// take as a plain field is dropped (inventoryText); descriptive text (CPU
// and disk models, serials, drivers) that the inventory would refuse is
// dropped likewise (inventory.DescrText). wire.ParseReport has
// refused control characters and over-long strings already.
func FactsFromReport(f *wire.Facts) inventory.Facts {
	out := inventory.Facts{
		Serial:   strings.TrimSpace(f.Serial),
		UUID:     strings.ToLower(f.UUID),
		Vendor:   inventoryText(f.Vendor),
		Model:    inventoryText(f.Product),
		Firmware: f.Firmware,
		CPUModel: inventory.DescrText(f.CPUModel),
		CPUCores: f.CPUs,
		MemGB:    int((f.MemoryBytes + GiB - 1) / GiB),
	}
	for _, d := range f.Disks {
		out.Disks = append(out.Disks, inventory.Disk{Name: d.Name, SizeBytes: int64(min(d.SizeBytes, 1<<62)),
			Serial: inventory.DescrText(d.Serial), Model: inventory.DescrText(d.Model), Rotational: d.Rotational, WWN: inventory.DescrText(d.WWN)})
	}
	details := map[string]wire.NIC{}
	for _, n := range f.NICs {
		details[n.MAC] = n
	}
	for _, mac := range f.MACs {
		n := details[mac]
		out.NICs = append(out.NICs, inventory.NIC{MAC: mac, Name: inventory.DescrText(n.Name), SpeedMbps: n.SpeedMbps, Driver: inventory.DescrText(n.Driver)})
	}
	return out
}

// inventoryText keeps a DMI string only when the inventory accepts it as a
// plain field (letters, digits, _.:/- and spaces); firmware strings such as
// "QEMU" pass, odd ones are dropped rather than failing the commission.
func inventoryText(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 256 {
		return ""
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			i > 0 && strings.ContainsRune("_.:/ -", r)
		if !ok {
			return ""
		}
	}
	return s
}
