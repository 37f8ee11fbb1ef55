package images

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestNoCloudHostKeys: with a host-key URL and token the user-data runs
// HostKeysScript from bootcmd, once per instance, before sshd starts,
// keeping the keys it reports (ssh_deletekeys: false); golden file
// testdata/nocloud/user-data-host-keys. Without them there is no step.
func TestNoCloudHostKeys(t *testing.T) {
	s := seed()
	s.HostKeysURL = "http://10.0.0.1:8080/api/v1/host-keys"
	s.HostKeysToken = "m-0007.0123456789abcdef0123456789abcdef0123456789abcdef"
	md, ud, err := NoCloud(s)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "nocloud/user-data-host-keys", ud)
	if strings.Contains(string(md), s.HostKeysToken) {
		t.Error("meta-data carries the host-key token")
	}
	var cc struct {
		DeleteKeys *bool      `yaml:"ssh_deletekeys"`
		Bootcmd    [][]string `yaml:"bootcmd"`
	}
	if err := yaml.Unmarshal(ud, &cc); err != nil {
		t.Fatal(err)
	}
	if cc.DeleteKeys == nil || *cc.DeleteKeys {
		t.Errorf("ssh_deletekeys %v, want false", cc.DeleteKeys)
	}
	want := []string{"cloud-init-per", "instance", "ironrack-host-keys", "python3", "-c", HostKeysScript, s.HostKeysURL, s.HostKeysToken, "/etc/ssh"}
	if len(cc.Bootcmd) != 1 || strings.Join(cc.Bootcmd[0], "\x00") != strings.Join(want, "\x00") {
		t.Errorf("bootcmd %q", cc.Bootcmd)
	}

	_, plain, err := NoCloud(seed())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain), "bootcmd") || strings.Contains(string(plain), "ssh_deletekeys") {
		t.Error("a seed without a host-key token reports keys")
	}

	for name, mod := range map[string]func(*Seed){
		"token only":  func(s *Seed) { s.HostKeysURL = "" },
		"url only":    func(s *Seed) { s.HostKeysToken = "" },
		"bad url":     func(s *Seed) { s.HostKeysURL = "ftp://x/y" },
		"quote token": func(s *Seed) { s.HostKeysToken = "a'b" },
	} {
		bad := s
		mod(&bad)
		if _, _, err := NoCloud(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
