package images

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// TestNetworkConfig6Cmdline: the fragment is network-config= and base64 of
// a version 2 config: the NIC with the boot MAC, renamed BootNIC, DHCPv6
// and RAs, no DHCPv4. A malformed MAC is refused.
func TestNetworkConfig6Cmdline(t *testing.T) {
	frag, err := NetworkConfig6Cmdline("52:54:00:AB:00:66")
	if err != nil {
		t.Fatal(err)
	}
	b64, ok := strings.CutPrefix(frag, "network-config=")
	if !ok || strings.ContainsAny(frag, " \t\n;$\"'") {
		t.Fatalf("fragment %q: want one network-config=BASE64 word", frag)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	var got any
	if err := yaml.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%v:\n%s", err, raw)
	}
	want := map[string]any{"version": 2, "ethernets": map[string]any{"boot0": map[string]any{
		"match": map[string]any{"macaddress": "52:54:00:ab:00:66"}, "set-name": "boot0",
		"dhcp4": false, "dhcp6": true, "accept-ra": true}}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("config (-want +got):\n%s", d)
	}
	for _, bad := range []string{"", "52:54:00:ab:00", "00:00:00:00:00:00:00:e0:00:00:00:00:00:00:00:00:00:00:00:00", "nope"} {
		if _, err := NetworkConfig6Cmdline(bad); err == nil || !strings.Contains(err.Error(), "boot MAC") {
			t.Errorf("MAC %q: err %v, want one naming the boot MAC", bad, err)
		}
	}
}

// TestNetworkConfig6CloudInit feeds the fragment to the OS image's own
// cloud-init (the python package of a cached debootstrap tree, run by the
// host's python3): it reads it from the command line as it does at boot and
// renders ifupdown's "iface boot0 inet6 dhcp" with accept_ra 1 and no
// IPv4 stanza. Skipped when no Debian tree is cached (images build debian
// makes one).
func TestNetworkConfig6CloudInit(t *testing.T) {
	cache, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	trees, _ := filepath.Glob(filepath.Join(cache, "debian-*", "usr", "lib", "python3", "dist-packages", "cloudinit"))
	if len(trees) == 0 {
		t.Skip("no cached Debian tree with cloud-init (images build debian)")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3")
	}
	frag, err := NetworkConfig6Cmdline("52:54:00:60:00:66")
	if err != nil {
		t.Fatal(err)
	}
	script := `import sys
from cloudinit.net import cmdline, network_state, eni
cfg = cmdline.read_kernel_cmdline_config(sys.argv[1])
print(eni.Renderer()._render_interfaces(network_state.parse_net_config_data(cfg)))
`
	cmd := exec.Command("python3", "-c", script, "root=LABEL=x ro "+frag+" console=ttyS0")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Dir(trees[0]))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cloud-init (%s): %v\n%s", trees[0], err, out)
	}
	got := string(out)
	for _, want := range []string{"auto boot0\n", "iface boot0 inet6 dhcp\n", "    accept_ra 1\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered interfaces lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "inet dhcp") || strings.Contains(got, "inet static") {
		t.Errorf("rendered interfaces configure IPv4:\n%s", got)
	}
}
