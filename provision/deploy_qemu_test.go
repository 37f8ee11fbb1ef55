package provision_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
	"github.com/ironrack/ironrack/provision"
)

// testImage builds a small real OS image version into the lab's data dir
// and registers it: root.img is an ext4 file system (mkfs.ext4 -d of a tiny
// tree, label ironrack-root) of sizeMiB, with the discovery kernel as the
// image's kernel (it has no initrd, so the deployed "OS" is the kernel
// finding its root by label: what the boot script and its command line
// carry is what is checked). It returns the version and root.img's bytes.
func testImage(t *testing.T, l *labtest.Lab, version string, sizeMiB int) []byte {
	t.Helper()
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "ironrack-image"), []byte("tiny "+version+"\n"), 0o644)
	dir := images.Dir(l.Data, "tiny", version)
	os.MkdirAll(dir, 0o755)
	root := filepath.Join(dir, "root.img")
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "ironrack-root", "-E", "root_owner=0:0", "-d", tree, root, strconv.Itoa(sizeMiB)+"M").CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	b, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	labtest.CopyFile(t, filepath.Join(l.Discovery, "vmlinuz"), filepath.Join(dir, "vmlinuz"))
	os.WriteFile(filepath.Join(dir, "cmdline"), []byte("root=LABEL=ironrack-root ro console=ttyS0,115200n8\n"), 0o644)
	man := images.Manifest{Name: "tiny", Version: version, Kernel: "vmlinuz", Root: "root.img"}
	var sums strings.Builder
	for _, f := range []string{"vmlinuz", "root.img"} {
		fb, _ := os.ReadFile(filepath.Join(dir, f))
		s := sha256.Sum256(fb)
		man.Files = append(man.Files, images.File{Name: f, Size: int64(len(fb)), SHA256: hex.EncodeToString(s[:])})
		sums.WriteString(hex.EncodeToString(s[:]) + "  " + f + "\n")
	}
	mb, _ := json.MarshalIndent(man, "", "  ")
	os.WriteFile(filepath.Join(dir, images.ManifestFile), mb, 0o644)
	os.WriteFile(filepath.Join(dir, images.SumsFile), []byte(sums.String()), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := (&images.Catalog{KV: l.Consul.KV()}).Register(ctx, man); err != nil {
		t.Fatal(err)
	}
	return b
}

func deployer(l *labtest.Lab) *provision.Deployer {
	return &provision.Deployer{
		Store:  l.Store,
		Images: &images.Catalog{KV: l.Consul.KV()},
		Logger: l.Logger(),
		Who:    "test",
		Fleet: &provision.Fleet{Inventory: l.Store, Logger: l.Logger(),
			Controller: &ipmi.Controller{Timeout: 5 * time.Second}, Bulk: ipmi.BulkOptions{CallTimeout: 5 * time.Second}},
	}
}

// events collects a workflow's progress events.
type events struct {
	mu  sync.Mutex
	evs []provision.Event
	on  func(provision.Event)
}

func (e *events) add(ev provision.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	on := e.on
	e.mu.Unlock()
	if on != nil {
		on(ev)
	}
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for _, ev := range e.evs {
		b.WriteString(string(ev.State) + " " + ev.What + ": " + ev.Message + "\n")
	}
	return b.String()
}

// checkWiped waits for a released machine to power off and checks its
// disk's first and last MiB read zero from the host.
func checkWiped(t *testing.T, v *labtest.VM) {
	t.Helper()
	if !v.WaitOff(time.Now().Add(time.Minute)) {
		t.Fatalf("wiped machine did not power off")
	}
	zero := make([]byte, 1<<20)
	size := int64(v.Spec.DiskGB) << 30
	if !bytes.Equal(readDisk(t, v.Disk, 0, 1<<20), zero) || !bytes.Equal(readDisk(t, v.Disk, size-1<<20, 1<<20), zero) {
		t.Fatal("after release, the disk's first or last MiB is not zero")
	}
}

func readDisk(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDeployQEMU is deploy and release end to end, in the lab, with one TCG
// machine under an ipmi_sim BMC that powers its QEMU on and off:
//
//  1. the unknown VM boots, is discovered and commissioned (ready), powers
//     off; its BMC is recorded on the machine;
//  2. the deploy workflow (what `ironrack deploy` runs) claims it, writes
//     the spec, sets PXE and powers it on through the BMC; the agent streams
//     the image — the boot server is stopped and started again while it
//     does — verifies it, reports, reboots; the machine is deployed, the
//     disk (read from the host) holds the image, and the next boot is the
//     image's kernel with the NoCloud seed on its command line;
//  3. release (with allow-reboot: the machine is on) cycles it into the
//     agent's wipe; it is ready again and the disk's first and last MiB
//     are zero;
//  4. a deploy of an image whose file does not match its manifest's sha256
//     ends in failed_deployment at the verify step, never deployed, with the
//     disk's first MiB zeroed.
func TestDeployQEMU(t *testing.T) {
	l := labtest.New(t, labtest.Config{Tools: []string{"mkfs.ext4", "ipmi_sim"}})
	ctx := context.Background()
	img := testImage(t, l, "1", 192)

	v := l.Start(labtest.VMSpec{MAC: "52:54:00:31:00:10", Serial: "DEPLOY-1", MemMiB: 1024, CPUs: 1, DiskGB: 1, Reboot: true})
	m, err := l.WaitState(v, inventory.StateReady, time.Now().Add(4*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !v.WaitOff(time.Now().Add(time.Minute)) {
		t.Fatalf("discovered VM did not power off:\n%s", labtest.Tail(v.Console(), 20))
	}
	l.AttachBMC(v, netip.MustParseAddr("127.0.31.41"), m.ID)

	// Deploy, with the boot server restarted mid-stream.
	d := deployer(l)
	var evs events
	var restart sync.Once
	restarted := make(chan struct{})
	evs.on = func(ev provision.Event) {
		if ev.Percent > 0 && ev.Percent < 80 {
			restart.Do(func() {
				go func() {
					defer close(restarted)
					l.StopBootServer()
					time.Sleep(3 * time.Second)
					l.StartBootServer()
				}()
			})
		}
	}
	start := time.Now()
	res := d.Deploy(ctx, []string{m.ID}, provision.DeployRequest{Owner: "test", Image: "tiny", Version: "1", HostnamePrefix: "web",
		SSHKeys: []string{labtest.NewSSHKey(t).Authorized}, Timeout: 8 * time.Minute, Progress: evs.add})
	t.Logf("deploy took %v; events:\n%s", time.Since(start), evs.String())
	if len(res) != 1 || !res[0].OK() || res[0].State != inventory.StateDeployed || res[0].Hostname != "web-1" {
		t.Fatalf("deploy: %+v\nconsole:\n%s", res, labtest.Tail(v.Console(), 40))
	}
	select {
	case <-restarted:
	default:
		t.Fatalf("the boot server was never restarted mid-deploy (no progress event below 80%%):\n%s", evs.String())
	}
	h := strings.Join(l.History(m.ID), "\n")
	for _, want := range []string{"allocate: ", "deploy: image tiny/1 as web-1", "boot pxe persistent", "power on", "boot agent deploy", "agent deploy: progress", "agent deploy: agent: done"} {
		if !strings.Contains(h, want) {
			t.Errorf("history lacks %q:\n%s", want, h)
		}
	}
	if !strings.Contains(h, "1 resumed") {
		t.Errorf("the agent's done event does not say it resumed once:\n%s", h)
	}
	// The next boot is the image's kernel, with the NoCloud seed.
	if !v.WaitConsole("ds=nocloud-net;s=http://192.0.2.1:8080/nocloud/"+m.ID+".", time.Now().Add(3*time.Minute)) {
		t.Errorf("deployed machine did not boot the image's kernel with the NoCloud seed:\n%s", labtest.Tail(v.Console(), 30))
	}
	if got := readDisk(t, v.Disk, 0, int64(len(img))); !bytes.Equal(got, img) {
		t.Fatalf("the disk does not hold the image")
	}

	// Release: the machine is on (the deployed OS), so allow the reboot.
	if r := d.Release(ctx, []string{m.ID}, provision.ReleaseRequest{Timeout: time.Minute}); r[0].OK() || r[0].Step != "power" {
		t.Fatalf("release of a running machine without allow-reboot: %+v, want a power refusal", r)
	}
	evs = events{}
	res = d.Release(ctx, []string{m.ID}, provision.ReleaseRequest{AllowReboot: true, Timeout: 6 * time.Minute, Progress: evs.add})
	t.Logf("release events:\n%s", evs.String())
	if !res[0].OK() || res[0].State != inventory.StateReady {
		t.Fatalf("release: %+v\nconsole:\n%s", res, labtest.Tail(v.Console(), 30))
	}
	checkWiped(t, v)

	// A corrupt image: failed_deployment at verify, never deployed.
	corrupt := filepath.Join(images.Dir(l.Data, "tiny", "1"), "root.img")
	b, _ := os.ReadFile(corrupt)
	b[len(b)/2] ^= 0xff
	os.WriteFile(corrupt, b, 0o644)
	evs = events{}
	res = d.Deploy(ctx, []string{m.ID}, provision.DeployRequest{Owner: "test", Image: "tiny", Version: "1", SSHKeys: []string{labtest.NewSSHKey(t).Authorized}, Timeout: 6 * time.Minute, Progress: evs.add})
	t.Logf("corrupt deploy events:\n%s", evs.String())
	if res[0].OK() || res[0].State != inventory.StateFailedDeployment || res[0].Step != "agent" || !strings.Contains(res[0].Error, "verify") {
		t.Fatalf("deploy of a corrupt image: %+v", res)
	}
	for _, e := range l.History(m.ID)[len(strings.Split(h, "\n")):] {
		if strings.HasPrefix(e, "deploy: agent: done") || strings.Contains(e, "→ deployed") {
			t.Errorf("the corrupt deploy marked the machine deployed: %q", e)
		}
	}
	if !v.WaitOff(time.Now().Add(time.Minute)) {
		t.Fatalf("machine with a failed deploy did not power off")
	}
	if !bytes.Equal(readDisk(t, v.Disk, 0, 1<<20), make([]byte, 1<<20)) {
		t.Error("after a failed verify the disk's first MiB is not zeroed")
	}
}
