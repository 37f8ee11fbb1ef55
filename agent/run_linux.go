package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"

	"github.com/ironrack/ironrack/agent/wire"
)

// ModuleDir holds the kernel modules of the initramfs, and ModuleOrder the
// file that lists them (base names, one a line) in load order.
const (
	ModuleDir   = "/" + wire.ModuleDir
	ModuleOrder = "/" + wire.ModuleOrderFile
)

// Time bounds of one discovery run.
const (
	nicWait    = 20 * time.Second // for the NIC to appear after its module loads
	dhcpWait   = 90 * time.Second // for a lease, DISCOVERs retried within
	reportWait = 3 * time.Minute  // for the facts report, retries within
	// factsFirstWait bounds the facts report before a deploy or wipe.
	factsFirstWait = 30 * time.Second
)

// Next is what the machine does when Run returns.
type Next int

const (
	// NextPowerOff: power off (discovery, commissioning, wipe, any failure).
	NextPowerOff Next = iota
	// NextReboot: reboot (a deploy that wrote and verified its image: the
	// boot server now hands the machine its deployed OS).
	NextReboot
)

// Run is the agent as /init: it mounts the kernel's file systems, loads
// the modules, brings the boot NIC up with DHCP, collects the facts and
// does the work of its mode (ironrack.mode): report the facts (discover),
// check and report (commission), write the image (deploy) or wipe the
// disks (wipe). The caller powers the machine off or reboots it, as Run's
// Next says, whatever error Run returns.
func Run(ctx context.Context, log io.Writer) (Next, error) {
	next := NextPowerOff
	err := run(ctx, log, &next)
	return next, err
}

func run(ctx context.Context, log io.Writer, next *Next) error {
	say := func(format string, a ...any) { fmt.Fprintf(log, "ironrack-agent: "+format+"\n", a...) }
	say("started")
	if err := mountAll(); err != nil {
		return err
	}
	loadStart := time.Now()
	loaded, all, modErrs := loadModules(ModuleOrder, say)
	for _, err := range modErrs {
		say("%v", err)
	}
	say("modules loaded in %.1fs: %d of %d for this machine's devices, %d failed", time.Since(loadStart).Seconds(), loaded, all, len(modErrs))
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read the kernel command line: %w", err)
	}
	cl := ParseCmdline(string(raw))
	say("mode=%s url=%s machine=%s", cl.Mode, cl.URL, cl.Machine)
	if cl.URL == "" {
		return errors.New("no ironrack.url on the kernel command line: nothing to report to")
	}
	if err := linkUp("lo"); err != nil {
		say("lo: %v", err)
	}
	nic, err := bootNIC(ctx, cl.MAC)
	if err != nil {
		return err
	}
	say("dhcp on %s", nic)
	if err := dhcp(ctx, nic, say); err != nil {
		return err
	}

	facts, err := Collect(os.DirFS("/"))
	if err != nil {
		// Report what there is: the server refuses what it cannot use.
		say("facts incomplete: %v", err)
	}
	if b, err := json.Marshal(facts); err == nil {
		say("facts %s", b)
	}
	if facts.MemorySource != MemorySMBIOS {
		say("memory from %s: the SMBIOS table has no memory devices", facts.MemorySource)
	}
	rctx, cancel := context.WithTimeout(ctx, reportWait)
	defer cancel()
	p := &Poster{URL: cl.URL, Token: cl.Token, Log: log}
	if cl.Mode == "deploy" || cl.Mode == "wipe" {
		// Facts first: the boot server compares them with the record
		// (drift). Best effort, and bounded: the work goes on without.
		fctx, fcancel := context.WithTimeout(ctx, factsFirstWait)
		if err := p.Post(fctx, facts.Report()); err != nil {
			say("facts NOT reported (going on with %s): %v", cl.Mode, err)
		} else {
			say("facts reported")
		}
		fcancel()
	}
	switch cl.Mode {
	case "commission":
		return commission(rctx, p, facts, say)
	case "deploy":
		ok, err := deploy(ctx, p, say)
		if ok {
			*next = NextReboot
		}
		return err
	case "wipe":
		// Not rctx: a zero erase of large disks takes far longer than a
		// report; wipe bounds each report itself.
		return wipe(ctx, p, facts, cl.Erase, say)
	}
	if err := p.Post(rctx, facts.Report()); err != nil {
		return fmt.Errorf("facts NOT reported: %w", err)
	}
	say("facts reported")
	return nil
}

// commission runs the hardware checks. When they pass, it reports the
// facts (which commission the machine) and a done event; when one fails,
// only a failed event naming it, so the facts of a faulty machine are not
// applied.
func commission(ctx context.Context, p *Poster, facts Facts, say func(string, ...any)) error {
	if err := p.Post(ctx, wire.EventReport("commission", "started", "hardware checks")); err != nil {
		return fmt.Errorf("commission event NOT reported: %w", err)
	}
	checks := Commission(os.DirFS("/"), facts, openDisk)
	for _, c := range checks {
		if c.Err != "" {
			say("check %s: FAILED: %s", c.Name, c.Err)
		} else {
			say("check %s: ok", c.Name)
		}
	}
	if Failed(checks) {
		if err := p.Post(ctx, wire.EventReport("commission", "failed", Summary(checks))); err != nil {
			return fmt.Errorf("commission failure NOT reported: %w", err)
		}
		say("commissioning failed: reported")
		return nil
	}
	if err := p.Post(ctx, facts.Report()); err != nil {
		return fmt.Errorf("facts NOT reported: %w", err)
	}
	say("facts reported")
	if err := p.Post(ctx, wire.EventReport("commission", "done", Summary(checks))); err != nil {
		return fmt.Errorf("commission event NOT reported: %w", err)
	}
	say("commissioning done: reported")
	return nil
}

func openDisk(name string) (io.ReaderAt, io.Closer, error) {
	f, err := os.Open(filepath.Join("/dev", filepath.Base(name)))
	if err != nil {
		return nil, nil, err
	}
	return f, f, nil
}

// PowerOff syncs and powers the machine off. It returns only on failure.
func PowerOff() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// Reboot syncs and restarts the machine. It returns only on failure.
func Reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

// deployWait bounds a deploy: instructions, the stream (resumed across a
// boot server's restarts) and the result report.
const deployWait = 30 * time.Minute

// deploy writes the image the boot server names to the chosen disk, hashing
// while streaming, and reports each step. It returns true when the image was
// written, verified and reported (the machine then reboots into it). On a
// failure it reports "deploy failed <step>: <error>"; an image that was
// (partly) written but not verified has its first MiB zeroed first, so
// nothing half-written boots.
func deploy(ctx context.Context, p *Poster, say func(string, ...any)) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, deployWait)
	defer cancel()
	fail := func(step string, err error) (bool, error) {
		say("deploy failed at %s: %v", step, err)
		rctx, rcancel := context.WithTimeout(context.Background(), reportWait)
		defer rcancel()
		if perr := p.Post(rctx, wire.EventReport("deploy", "failed", step+": "+err.Error())); perr != nil {
			return false, fmt.Errorf("deploy failed at %s (%v), NOT reported: %w", step, err, perr)
		}
		return false, nil
	}
	if err := p.Post(ctx, wire.EventReport("deploy", "started", "")); err != nil {
		return false, fmt.Errorf("deploy start NOT reported: %w", err)
	}
	in, err := p.FetchInstructions(ctx)
	if err != nil {
		return fail("instructions", err)
	}
	chosen, err := ChooseDisks(os.DirFS("/"), in.Disk)
	if errors.Is(err, ErrDrift) {
		return fail("drift", err)
	}
	if err != nil {
		return fail("disk", err)
	}
	mirror := in.Disk.Layout == "mirror"
	var names []string
	for _, d := range chosen {
		names = append(names, d.Name)
	}
	if mirror != (len(chosen) == 2) || len(chosen) == 0 || len(chosen) > 2 {
		return fail("disk", fmt.Errorf("root layout %q over %d disks (%s)", in.Disk.Layout, len(chosen), strings.Join(names, ", ")))
	}
	if in.Disk.Rule == wire.Hint {
		say("root disk %s chosen by hint %q; the disks seen are the recorded ones", strings.Join(names, "+"), in.Disk.Hint)
	}
	dev := filepath.Join("/dev", chosen[0].Name)
	if mirror {
		if err := BuildMirror(ctx, names); err != nil {
			return fail("mirror", err)
		}
		dev = MirrorDevice
		say("mirror %s built over %s (RAID 1, metadata 1.0)", dev, strings.Join(names, " and "))
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fail("disk", err)
	}
	defer f.Close()
	say("deploy %s/%s (%d bytes, sha256 %s) to %s", in.Image, in.Version, in.Size, in.SHA256, dev)
	url := strings.TrimRight(p.URL, "/") + in.URL
	th := &Throttle{Step: 5, Interval: 2 * time.Second}
	progress := func(written int64) {
		pct := int(written * 100 / in.Size)
		if !th.Due(pct) {
			return
		}
		say("deploy %d%%", pct)
		// One quick attempt: progress is best effort and must not stall
		// the stream while the boot server is away.
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		r := wire.EventReport("deploy", "progress", fmt.Sprintf("%s: %d of %d bytes", dev, written, in.Size))
		r.Event.Percent = pct
		_ = (&Poster{URL: p.URL, Token: p.Token, Client: p.Client, Sleep: func(context.Context, time.Duration) error { return errors.New("no retry") }}).Post(pctx, r)
	}
	start := time.Now()
	res, err := (&Streamer{Progress: progress, Log: os.Stdout}).Stream(ctx, url, in.Size, in.SHA256, f)
	if err != nil {
		step := "download"
		if errors.Is(err, ErrChecksum) {
			step = "verify"
		}
		if res.Written > 0 {
			if zerr := ZeroRange(f, 0, MiB); zerr != nil {
				err = fmt.Errorf("%w; and zeroing the first MiB failed: %v", err, zerr)
			} else {
				err = fmt.Errorf("%w (first MiB of %s zeroed)", err, dev)
			}
			f.Sync()
		}
		return fail(step, err)
	}
	if err := f.Sync(); err != nil {
		return fail("sync", err)
	}
	el := time.Since(start)
	if mirror {
		f.Close()
		if err := StopMirror(ctx); err != nil {
			return fail("mirror", err)
		}
		dev += " (mirror of " + strings.Join(names, "+") + ")"
	}
	msg := fmt.Sprintf("%s/%s to %s: %d bytes in %.1fs (%.1f MiB/s), sha256 verified while streaming, %d attempts, %d resumed",
		in.Image, in.Version, dev, res.Written, el.Seconds(), float64(res.Written)/MiB/el.Seconds(), res.Attempts, res.Resumed)
	say("deploy done: %s", msg)
	rctx, rcancel := context.WithTimeout(context.Background(), reportWait)
	defer rcancel()
	if err := p.Post(rctx, wire.EventReport("deploy", "done", msg)); err != nil {
		return false, fmt.Errorf("deploy done NOT reported: %w", err)
	}
	return true, nil
}

// wipe erases every disk at the erase level (quick if empty: the first
// and last MiB, where partition tables, the backup GPT and file system
// superblocks are; zero: every byte, with progress events; secure: the
// drive's own erase, SecureErase, which refuses disks that have none and
// notes an ATA drive's temporary password in the history before it sets
// it), then reports done (naming each disk's erase) or which disks failed
// or were refused.
func wipe(ctx context.Context, p *Poster, facts Facts, erase string, say func(string, ...any)) error {
	if erase == "" {
		erase = EraseQuick
	}
	post := func(r wire.Report) error {
		rctx, cancel := context.WithTimeout(ctx, reportWait)
		defer cancel()
		return p.Post(rctx, r)
	}
	if err := post(wire.EventReport("wipe", "started", "erase "+erase)); err != nil {
		return fmt.Errorf("wipe start NOT reported: %w", err)
	}
	var total, before int64
	for _, d := range facts.Disks {
		total += int64(d.SizeBytes)
	}
	th := &Throttle{Step: 5, Interval: 2 * time.Second}
	progress := func(dev string, written int64) {
		pct := 100
		if total > 0 {
			pct = int((before + written) * 100 / total)
		}
		if !th.Due(pct) {
			return
		}
		say("wipe %d%%", pct)
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		r := wire.EventReport("wipe", "progress", fmt.Sprintf("erase zero: %s at %d bytes, %d of %d bytes in all", dev, written, before+written, total))
		r.Event.Percent = pct
		_ = (&Poster{URL: p.URL, Token: p.Token, Client: p.Client, Sleep: func(context.Context, time.Duration) error { return errors.New("no retry") }}).Post(pctx, r)
	}
	// note records a secure erase's step (an ATA drive's temporary
	// password before it is set) in the history; it must get through.
	note := func(msg string) error {
		say("%s", msg)
		return post(wire.EventReport("wipe", "progress", msg))
	}
	var done, failed []string
	for _, d := range facts.Disks {
		dev := filepath.Join("/dev", d.Name)
		how := ""
		err := func() error {
			if erase == EraseSecure {
				var err error
				how, err = SecureErase(ctx, d.Name, int64(d.SizeBytes), note)
				return err
			}
			f, err := os.OpenFile(dev, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			switch erase {
			case EraseZero:
				err = ZeroDisk(f, int64(d.SizeBytes), func(n int64) { progress(dev, n) })
			case EraseQuick:
				err = WipeDisk(f, int64(d.SizeBytes))
			default:
				err = fmt.Errorf("erase level %q: this agent knows quick, zero and secure", erase)
			}
			if err != nil {
				return err
			}
			return f.Sync()
		}()
		before += int64(d.SizeBytes)
		if err != nil {
			say("wipe %s: %v", dev, err)
			failed = append(failed, fmt.Sprintf("%s: %v", dev, err))
			continue
		}
		say("wiped %s (%s)", dev, erase)
		if how != "" {
			dev += " (" + how + ")"
		}
		done = append(done, dev)
	}
	what := map[string]string{EraseQuick: "first and last MiB zeroed", EraseZero: "every byte zeroed", EraseSecure: "the drive's own erase"}[erase]
	status, msg := "done", fmt.Sprintf("erase %s: %s on %s", erase, what, strings.Join(done, ", "))
	if len(failed) > 0 {
		status, msg = "failed", fmt.Sprintf("erase %s: %s", erase, strings.Join(failed, "; "))
		if len(done) > 0 {
			msg += fmt.Sprintf(" (%s on %s)", what, strings.Join(done, ", "))
		}
	}
	if len(done) == 0 && len(failed) == 0 {
		msg = "erase " + erase + ": no disks"
	}
	if err := post(wire.EventReport("wipe", status, msg)); err != nil {
		return fmt.Errorf("wipe %s NOT reported: %w", status, err)
	}
	say("wipe %s: reported", status)
	return nil
}

func mountAll() error {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"efivarfs", "/sys/firmware/efi/efivars", "efivarfs"},
	} {
		if m.fstype == "efivarfs" {
			if _, err := os.Stat(m.dir); err != nil {
				continue // BIOS boot
			}
		}
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			if m.fstype == "efivarfs" {
				continue
			}
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

// loadModules loads the modules that order lists, in its order (which
// images derived with depmod/modprobe --show-depends): those this machine
// needs (SelectModules, from the index beside the order), or every one
// when there is no index or it cannot be read. A module that fails is
// reported and skipped: the next may still give the agent a NIC. It
// returns how many it tried of how many there are.
func loadModules(order string, say func(string, ...any)) (int, int, []error) {
	b, err := os.ReadFile(order)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil // everything built in
	}
	if err != nil {
		return 0, 0, []error{fmt.Errorf("modules: %w", err)}
	}
	files := strings.Fields(string(b))
	load := files
	if idx, err := os.ReadFile(filepath.Join(filepath.Dir(order), filepath.Base(wire.ModuleIndexFile))); err == nil {
		if sel, err := SelectModules(os.DirFS("/"), files, idx); err != nil {
			say("%v: loading every module", err)
		} else {
			load = sel
		}
	}
	var errs []error
	for _, name := range load {
		if err := loadModule(filepath.Join(filepath.Dir(order), filepath.Base(name))); err != nil {
			errs = append(errs, err)
		}
	}
	return len(load), len(files), errs
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), err)
	}
	return nil
}

// bootNIC waits for the interface with mac (the one the machine booted
// from, ironrack.mac) or, without mac, the first physical Ethernet NIC.
func bootNIC(ctx context.Context, mac string) (string, error) {
	deadline := time.Now().Add(nicWait)
	for {
		for _, n := range nics(os.DirFS("/")) {
			if mac == "" || n.MAC == mac {
				return n.Name, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no NIC with MAC %q after %s (are its modules in the initramfs?)", mac, nicWait)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// dhcp brings nic up and configures the address of a DHCP lease on it. The
// agent talks only to its boot server, on the same L2 segment, so it sets
// no route.
func dhcp(ctx context.Context, nic string, say func(string, ...any)) error {
	if err := linkUp(nic); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dhcpWait)
	defer cancel()
	for attempt := 1; ; attempt++ {
		lease, err := requestLease(ctx, nic)
		if err == nil {
			ip, mask := lease.ACK.YourIPAddr, lease.ACK.SubnetMask()
			if err := setAddr(nic, ip, mask); err != nil {
				return err
			}
			ones, _ := net.IPMask(mask).Size()
			say("%s %s/%d from %s", nic, ip, ones, lease.ACK.ServerIPAddr)
			return nil
		}
		say("dhcp attempt %d on %s: %v", attempt, nic, err)
		if serr := sleepCtx(ctx, time.Second); serr != nil {
			return fmt.Errorf("no DHCP lease on %s: %w", nic, err)
		}
	}
}

func requestLease(ctx context.Context, nic string) (*nclient4.Lease, error) {
	c, err := nclient4.New(nic, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Request(ctx)
}

func ioctlSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket for interface ioctls: %w", err)
	}
	return fd, nil
}

func linkUp(nic string) error {
	fd, err := ioctlSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(nic)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: get flags: %w", nic, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: set up: %w", nic, err)
	}
	return nil
}

func setAddr(nic string, ip net.IP, mask net.IPMask) error {
	fd, err := ioctlSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	set := func(req uint, what string, v []byte) error {
		ifr, err := unix.NewIfreq(nic)
		if err != nil {
			return err
		}
		if err := ifr.SetInet4Addr(v); err != nil {
			return fmt.Errorf("%s: %s %v: %w", nic, what, v, err)
		}
		if err := unix.IoctlIfreq(fd, req, ifr); err != nil {
			return fmt.Errorf("%s: set %s: %w", nic, what, err)
		}
		return nil
	}
	ip4 := ip.To4()
	if ip4 == nil || len(mask) != 4 {
		return fmt.Errorf("%s: lease %v/%v is not IPv4", nic, ip, mask)
	}
	if err := set(unix.SIOCSIFADDR, "address", ip4); err != nil {
		return err
	}
	return set(unix.SIOCSIFNETMASK, "netmask", mask)
}
