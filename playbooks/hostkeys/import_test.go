package hostkeys

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ironrack/ironrack/inventory"
)

// TestImport: ssh-keyscan and known_hosts lines match machines by IP
// (with or without a port) and by ID; every refused line is FILE:LINE.
func TestImport(t *testing.T) {
	k1, k2, k3 := inventory.CanonicalKey(randomKey(t)), inventory.CanonicalKey(randomKey(t)), inventory.CanonicalKey(randomKey(t))
	ms := []*inventory.Machine{{ID: "m-aaaaaaaaaaaa", IP: "10.0.0.1"}, {ID: "m-bbbbbbbbbbbb", IP: "10.0.0.2"}}
	file := "# 10.0.0.1:22 SSH-2.0-OpenSSH_9.2p1 Debian-2\n" +
		"10.0.0.1 " + k1 + "\n" +
		"\n" +
		"[10.0.0.2]:2222,m-bbbbbbbbbbbb " + k2 + " root@b\n" +
		"10.0.0.1 " + k1 + "\n"
	es, err := ParseKnownHosts("keys.txt", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Match("keys.txt", es, ms)
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, im := range got {
		summary = append(summary, im.Machine.ID+" "+strings.Join(im.Keys, ";"))
	}
	want := []string{"m-aaaaaaaaaaaa " + k1, "m-bbbbbbbbbbbb " + k2}
	if d := cmp.Diff(want, summary); d != "" {
		t.Errorf("matched (-want +got):\n%s", d)
	}

	bad := map[string]struct{ file, want string }{
		"unknown host":   {"10.0.0.1 " + k1 + "\n10.0.0.9 " + k2 + "\n", `keys.txt:2: host "10.0.0.9" is no machine`},
		"two machines":   {"10.0.0.1,10.0.0.2 " + k1 + "\n", "keys.txt:1: hosts name two machines"},
		"second key":     {"10.0.0.1 " + k1 + "\n10.0.0.1 " + k3 + "\n", "keys.txt:2: a second, different ssh-ed25519 key"},
		"garbage":        {"\n\n10.0.0.1 ssh-ed25519 AAAAnope\n", "keys.txt:3: not a known_hosts line"},
		"cert authority": {"@cert-authority * " + k1 + "\n", "keys.txt:1: @cert-authority lines are not imported"},
		"hashed":         {"|1|abc=|def= " + k1 + "\n", "keys.txt:1: hashed host name"},
		"wildcard":       {"10.0.0.* " + k1 + "\n", `keys.txt:1: pattern "10.0.0.*"`},
		"empty":          {"# nothing\n", "keys.txt: no host keys"},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			es, err := ParseKnownHosts("keys.txt", strings.NewReader(c.file))
			if err == nil {
				_, err = Match("keys.txt", es, ms)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
		})
	}
}
