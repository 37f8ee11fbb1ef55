package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Keys made by ssh-keygen, as /etc/ssh/ssh_host_*_key.pub hold them.
const (
	edKey    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@web-1"
	ecdsaKey = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG4N87uRgg6CPrbIpwzlmP9bMM8dpEwWZ5oRLnkqUiZxNq+E= root@web-1"
)

func TestParseHostKeysReport(t *testing.T) {
	ok := `{"keys":["` + edKey + `","` + ecdsaKey + `"]}`
	rep, err := ParseHostKeysReport(strings.NewReader(ok))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{strings.TrimSuffix(edKey, " root@web-1"), strings.TrimSuffix(ecdsaKey, " root@web-1")}
	if d := cmp.Diff(want, rep.Keys); d != "" {
		t.Errorf("keys (-want +got):\n%s", d)
	}
	bad := map[string]struct{ body, want string }{
		"no keys":      {`{"keys":[]}`, "0 keys"},
		"unknown":      {`{"keys":["` + edKey + `"],"private":"x"}`, "unknown field"},
		"trailing":     {`{"keys":["` + edKey + `"]} {}`, "trailing data"},
		"type twice":   {`{"keys":["` + edKey + `","` + edKey + `"]}`, "a second ssh-ed25519 key"},
		"not a key":    {`{"keys":["hello world"]}`, "not a host key type"},
		"dsa":          {`{"keys":["ssh-dss AAAAB3NzaC1kc3M="]}`, "not a host key type"},
		"wrong blob":   {`{"keys":["ssh-rsa ` + strings.Fields(edKey)[1] + `"]}`, "not a ssh-rsa key"},
		"bad base64":   {`{"keys":["ssh-ed25519 AAAA!!"]}`, "base64"},
		"two lines":    {`{"keys":["` + edKey + `\nssh-ed25519 AAAA"]}`, "spans lines"},
		"certificate":  {`{"keys":["ssh-ed25519-cert-v01@openssh.com AAAA"]}`, "not a host key type"},
		"huge":         {`{"keys":["` + strings.Repeat("a", 70<<10) + `"]}`, "larger than"},
		"not json":     {`keys=ssh-ed25519`, "decode"},
		"nine keys":    {`{"keys":["a","b","c","d","e","f","g","h","i"]}`, "9 keys"},
		"short blob":   {`{"keys":["ssh-ed25519 AAA="]}`, "too short"},
		"lying length": {`{"keys":["ssh-ed25519 /////wAA"]}`, "not a ssh-ed25519 key"},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := ParseHostKeysReport(strings.NewReader(c.body))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// FuzzParseHostKeysReport: the endpoint faces the network before any
// token is checked against the store. Never panics; whatever it accepts
// has 1 to MaxHostKeys canonical lines and parses again unchanged. Seeds
// are in testdata/fuzz/FuzzParseHostKeysReport.
func FuzzParseHostKeysReport(f *testing.F) {
	f.Add([]byte(`{"keys":["` + edKey + `","` + ecdsaKey + `"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := ParseHostKeysReport(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(rep.Keys) == 0 || len(rep.Keys) > MaxHostKeys {
			t.Fatalf("accepted %d keys", len(rep.Keys))
		}
		b, _ := json.Marshal(rep)
		again, err := ParseHostKeysReport(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("canonical form refused: %v\n%s", err, b)
		}
		if d := cmp.Diff(rep, again); d != "" {
			t.Fatalf("round trip changed it:\n%s", d)
		}
	})
}
