package cli

import (
	"strings"
	"testing"
)

func TestUICommands(t *testing.T) {
	c := newCLI(t)
	c.ok("inventory", "rack", "set", "--height", "24", "r1")
	if out := c.ok("inventory", "rack", "list"); !strings.Contains(out, "r1    24U") {
		t.Errorf("rack list:\n%s", out)
	}
	for args, want := range map[string]string{
		"inventory rack set --height 0 r1":   "height 0 out of range (1-60 units)",
		"inventory rack set --height 12 a/b": `rack "a/b": malformed name`,
		"inventory rack set r1":              `Required flag "height" not set`,
		"ui --listen 0.0.0.0:18081":          "is not a loopback address: serving the UI beyond this host needs --tls-cert and --tls-key",
		"ui --tls-cert x.pem":                "give both --tls-cert and --tls-key",
		"ui token create --role root bob":    `role "root": want viewer or admin`,
	} {
		if _, _, err := c.run("", strings.Fields(args)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
	tok := strings.TrimSpace(c.ok("ui", "token", "create", "--role", "admin", "alice"))
	if !strings.HasPrefix(tok, "alice.") || len(tok) < 40 {
		t.Errorf("token %q", tok)
	}
	if _, _, err := c.run("", "ui", "token", "create", "alice"); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("a second alice: %v", err)
	}
	c.ok("ui", "token", "delete", "alice")
	c.ok("ui", "token", "create", "alice")
}
