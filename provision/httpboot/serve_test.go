package httpboot_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"github.com/ironrack/ironrack/internal/servetest"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/provision/httpboot"
	"github.com/ironrack/ironrack/provision/ipxe"
)

type memInventory struct {
	mu       sync.Mutex
	machines map[string]ipxe.Machine // by MAC
	reports  map[string][]wire.Report
	boots    []string
}

func (m *memInventory) MachineByMAC(_ context.Context, mac net.HardwareAddr) (ipxe.Machine, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mm, ok := m.machines[mac.String()]; ok {
		return mm, nil
	}
	return ipxe.Machine{State: ipxe.StateUnknown}, nil
}

func (m *memInventory) RecordBoot(_ context.Context, mm ipxe.Machine, d ipxe.Decision) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.boots = append(m.boots, mm.MAC+" "+string(d.Action))
	return nil
}

func (m *memInventory) VerifyBootToken(_ context.Context, token string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mm := range m.machines {
		if mm.Token != "" && mm.Token == token {
			return mm.ID, true, nil
		}
	}
	return "", false, nil
}

func (m *memInventory) RecordReport(_ context.Context, id string, r wire.Report) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reports[id] = append(m.reports[id], r)
	return nil
}

type fixture struct {
	base   string
	kernel []byte
	inv    *memInventory
}

// start serves a data dir on 127.0.0.1: images/debian/12/{vmlinuz,initrd.img},
// a symlink out of the root, and a secret beside images/.
func start(t *testing.T) fixture {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		if testing.Short() {
			t.Skip("needs curl; skipped under -short")
		}
		t.Fatalf("needs curl (scripts/setup installs it): %v", err)
	}
	data := t.TempDir()
	dir := images.Dir(data, "debian", "12")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kernel := make([]byte, 300_000)
	rand.Read(kernel)
	must(t, os.WriteFile(filepath.Join(dir, "vmlinuz"), kernel, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "initrd.img"), []byte("initrd"), 0o644))
	must(t, os.WriteFile(filepath.Join(data, "secret"), []byte("SECRET"), 0o600))
	must(t, os.Symlink("/etc/passwd", filepath.Join(dir, "passwd")))
	must(t, os.Symlink(filepath.Join(data, "secret"), filepath.Join(dir, "secret")))
	ipxeDir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(ipxeDir, "ipxe.efi"), []byte("MZ-ipxe"), 0o644))

	inv := &memInventory{reports: map[string][]wire.Report{}, machines: map[string]ipxe.Machine{
		"52:54:00:00:00:01": {ID: "m1", MAC: "52:54:00:00:00:01", State: ipxe.StateDeployed, Token: "tok-m1",
			Image: ipxe.Image{Name: "debian", Version: "12", Kernel: "vmlinuz", Initrd: "initrd.img", Cmdline: "root=LABEL=root ro"}},
		"52:54:00:00:00:02": {ID: "m2", MAC: "52:54:00:00:00:02", State: ipxe.StateCommissioning, Token: "tok-m2"},
		"52:54:00:00:00:03": {ID: "m3", MAC: "52:54:00:00:00:03", State: ipxe.StateRetired},
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	base := "http://" + ln.Addr().String()
	reg := prometheus.NewRegistry()
	srv, err := httpboot.New(httpboot.Config{
		Listener: ln, ImageDir: images.Root(data), IPXEDir: ipxeDir,
		Env:      ipxe.Env{BaseURL: base},
		Machines: inv, Boots: inv, Tokens: inv, Reports: inv,
		MaxReportBytes: 4096,
		Registerer:     reg, Gatherer: reg,
	})
	must(t, err)
	servetest.Run(t, 10*time.Second, srv.Serve)
	return fixture{base: base, kernel: kernel, inv: inv}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// curl runs the real curl and returns status code and body.
func curl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := filepath.Join(t.TempDir(), "body")
	argv := append([]string{"-sS", "--max-time", "10", "-o", out, "-w", "%{http_code}"}, args...)
	code, err := exec.CommandContext(ctx, "curl", argv...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	body, _ := os.ReadFile(out)
	var n int
	fmt.Sscan(string(code), &n)
	return n, string(body)
}

func TestScripts(t *testing.T) {
	f := start(t)
	tests := map[string]struct {
		mac      string
		code     int
		contains []string
		absent   []string
	}{
		"deployed boots its OS":     {mac: "52:54:00:00:00:01", code: 200, contains: []string{"#!ipxe", "/images/debian/12/vmlinuz", "root=LABEL=root"}, absent: []string{"ironrack.mode", "/images/agent/"}},
		"commissioning boots agent": {mac: "52:54:00:00:00:02", code: 200, contains: []string{"ironrack.mode=commission", "ironrack.token=tok-m2"}},
		"retired boots nothing":     {mac: "52:54:00:00:00:03", code: 200, contains: []string{"exit"}, absent: []string{"kernel"}},
		"unknown MAC discovers":     {mac: "52-54-00-00-00-09", code: 200, contains: []string{"ironrack.mode=discover", "ironrack.mac=52:54:00:00:00:09"}, absent: []string{"ironrack.token"}},
		"bad mac":                   {mac: "nonsense", code: 400},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, body := curl(t, f.base+"/boot.ipxe?mac="+tc.mac)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			for _, s := range tc.contains {
				if !strings.Contains(body, s) {
					t.Errorf("script lacks %q:\n%s", s, body)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(body, s) {
					t.Errorf("script contains %q:\n%s", s, body)
				}
			}
		})
	}
	if len(f.inv.boots) != 4 {
		t.Errorf("boots recorded: %v, want 4", f.inv.boots)
	}
}

func TestFilesRangeAndTraversal(t *testing.T) {
	f := start(t)
	code, body := curl(t, f.base+"/images/debian/12/vmlinuz")
	if code != 200 || !bytes.Equal([]byte(body), f.kernel) {
		t.Fatalf("full kernel: status %d, %d bytes", code, len(body))
	}
	code, body = curl(t, "-r", "1000-1999", f.base+"/images/debian/12/vmlinuz")
	if code != 206 || !bytes.Equal([]byte(body), f.kernel[1000:2000]) {
		t.Fatalf("range: status %d, %d bytes", code, len(body))
	}
	code, body = curl(t, f.base+"/ipxe/ipxe.efi")
	if code != 200 || body != "MZ-ipxe" {
		t.Fatalf("ipxe.efi over HTTP: %d %q", code, body)
	}
	for _, p := range []string{
		"/images/../secret",
		"/images/debian/../../secret",
		"/images/debian/12/..%2f..%2f..%2fsecret",
		"/images/debian/12/%2e%2e/%2e%2e/%2e%2e/secret",
		"/images/debian/12/passwd",
		"/images/debian/12/secret",
		"/images//etc/passwd",
		"/images/%2fetc/%2fpasswd/x",
		"/images/debian/12/..%5c..%5csecret",
		"/ipxe/..%2fsecret",
		"/ipxe/%2fetc%2fpasswd",
		"/images/debian/12",
		"/images/debian/12/",
	} {
		code, body := curl(t, "--path-as-is", f.base+p)
		if code < 300 || strings.Contains(body, "SECRET") || strings.Contains(body, "root:") {
			t.Errorf("%s: status %d body %.60q: want a refusal", p, code, body)
		}
	}
}

func TestAgentAPI(t *testing.T) {
	f := start(t)
	facts := `{"kind":"facts","facts":{"macs":["52:54:00:00:00:02"],"cpus":2,"memory_bytes":1073741824,"disks":[{"name":"vda","size_bytes":10737418240}],"serial":"SN-2"}}`
	post := func(token, body string) (int, string) {
		args := []string{"-X", "POST", "-H", "Content-Type: application/json", "--data-binary", body, f.base + "/api/v1/report"}
		if token != "" {
			args = append([]string{"-H", "Authorization: Bearer " + token}, args...)
		}
		return curl(t, args...)
	}
	if code, _ := post("", facts); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := post("tok-wrong", facts); code != 401 {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code, body := post("tok-m2", facts); code != 204 {
		t.Fatalf("good report: %d %s", code, body)
	}
	if got := f.inv.reports["m2"]; len(got) != 1 || got[0].Facts.Serial != "SN-2" {
		t.Errorf("recorded reports for m2: %+v", got)
	}
	if code, body := post("tok-m2", `{"kind":"facts","facts":{"macs":[],"bogus":1}}`); code != 400 || !strings.Contains(body, "bogus") {
		t.Errorf("unknown field: %d %q, want 400 naming the field", code, body)
	}
	big := `{"kind":"event","event":{"phase":"x","status":"done","message":"` + strings.Repeat("a", 5000) + `"}}`
	if code, body := post("tok-m2", big); code != 400 || !strings.Contains(body, "larger than") {
		t.Errorf("oversize: %d %q, want 400 saying it is too large", code, body)
	}
	if code, _ := curl(t, f.base+"/api/v1/report"); code != 405 {
		t.Errorf("GET on the report endpoint: %d, want 405", code)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	f := start(t)
	if code, body := curl(t, f.base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("healthz: %d %q", code, body)
	}
	curl(t, f.base+"/boot.ipxe?mac=52:54:00:00:00:01")
	code, body := curl(t, f.base+"/metrics")
	if code != 200 || !strings.Contains(body, `ironrack_boot_scripts_total{action="os"} 1`) {
		t.Errorf("metrics: %d\n%s", code, body)
	}
}
