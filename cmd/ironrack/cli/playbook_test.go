package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/internal/treehash"
)

// srvHash is every path under each host's private /srv with mode and
// content hash.
func srvHash(t *testing.T, fx *runFixture) string {
	t.Helper()
	var b strings.Builder
	for _, h := range fx.hosts.Hosts {
		b.WriteString(h.Name + "\n" + treehash.Of(t, filepath.Join(h.Dir, "srv")))
	}
	return b.String()
}

func (fx *runFixture) logins() int {
	n := 0
	for _, h := range fx.hosts.Hosts {
		n += strings.Count(h.Log(), "Accepted publickey")
	}
	return n
}

func TestPlaybookCommand(t *testing.T) {
	fx := newRunFixture(t, 4)
	ctx := context.Background()
	dir := t.TempDir()
	// Each host's systemctl stand-in records its calls in the host's own /srv.
	for _, h := range fx.hosts.Hosts {
		bin := filepath.Join(h.Dir, "srv", "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte("#!/bin/sh\necho \"$*\" >> /srv/systemctl.log\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	blob := filepath.Join(dir, "blob")
	os.WriteFile(blob, []byte("release bits\n"), 0o644)
	pbFile := filepath.Join(dir, "site.yaml")
	os.WriteFile(pbFile, []byte(`name: site
vars:
  msg: hello
steps:
  - template: {content: "{{.Machine.ID}} in {{.Machine.Tier}}: {{.Vars.msg}}\n", dest: /srv/app/motd, mode: "0640"}
  - copy: {src: `+blob+`, dest: /srv/app/blob}
  - service: {name: app, action: reload, systemctl: /srv/bin/systemctl}
`), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("steps:\n  - run: true\n  - reboot: now\n"), 0o644)
	base := append([]string{"playbook", "run", "--tier", "web", "--batch", "2"}, fx.flags...)
	run := func(args ...string) (string, string, error) {
		return fx.run(ctx, append(append([]string(nil), base...), args...)...)
	}

	t.Run("refused before any host is touched", func(t *testing.T) {
		before, logins := srvHash(t, fx), fx.logins()
		for name, tc := range map[string]struct {
			args []string
			want string
		}{
			"bad step kind":       {[]string{bad}, bad + `:3: unknown step kind or key "reboot"`},
			"unknown var":         {[]string{"--var", "nope=1", pbFile}, "--var nope: " + pbFile + " declares no such var (it has: msg)"},
			"var not K=V":         {[]string{"--var", "msg", pbFile}, `--var "msg": want K=V`},
			"rollback undeclared": {[]string{"--rollback", pbFile}, "--var rollback: " + pbFile + " declares no such var"},
			"fails on one":        {[]string{"--var", `msg={{if eq .Machine.ID "` + fx.ids[3] + `"}}{{fail "not here"}}{{end}}`, pbFile}, "--var msg: machine " + fx.ids[3] + ": var msg: not here"},
			"no such built-in":    {[]string{"nope"}, `no built-in playbook "nope" (built-ins: deploy)`},
			"deploy needs vars":   {[]string{"deploy"}, "builtin/deploy.yaml:7: var service is required"},
		} {
			_, _, err := run(tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: err %v, want %q", name, err, tc.want)
			}
		}
		if srvHash(t, fx) != before || fx.logins() != logins {
			t.Errorf("a refused playbook touched the hosts (%d logins before, %d after)", logins, fx.logins())
		}
	})

	t.Run("--check changes nothing, then the run, then --check again", func(t *testing.T) {
		before, logins := srvHash(t, fx), fx.logins()
		out, stderr, err := run("--check", pbFile)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(stderr, "nothing is changed") || !strings.Contains(out, "template ("+pbFile+":5): would-change: would create") ||
			!strings.Contains(out, "service ("+pbFile+":7): would-change: would reload app") || !strings.Contains(out, "4 ok") {
			t.Errorf("check output:\n%s", out)
		}
		if srvHash(t, fx) != before {
			t.Error("--check changed a host's /srv")
		}
		if fx.logins() == logins {
			t.Error("--check logged in nowhere")
		}
		out, _, err = run("--var", "msg=hi from {{.Machine.Rack}}", pbFile)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for i, h := range fx.hosts.Hosts {
			motd, _ := os.ReadFile(filepath.Join(h.Dir, "srv/app/motd"))
			if want := fx.ids[i] + " in web: hi from r1\n"; string(motd) != want {
				t.Errorf("%s motd %q, want %q", h.Name, motd, want)
			}
			if b, _ := os.ReadFile(filepath.Join(h.Dir, "srv/app/blob")); string(b) != "release bits\n" {
				t.Errorf("%s blob %q", h.Name, b)
			}
			if b, _ := os.ReadFile(filepath.Join(h.Dir, "srv/systemctl.log")); string(b) != "reload app\n" {
				t.Errorf("%s systemctl calls %q", h.Name, b)
			}
		}
		before = srvHash(t, fx)
		out, _, err = run("--check", "--var", "msg=hi from {{.Machine.Rack}}", pbFile)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "template ("+pbFile+":5): unchanged") || !strings.Contains(out, "copy ("+pbFile+":6): unchanged") {
			t.Errorf("second check:\n%s", out)
		}
		if srvHash(t, fx) != before {
			t.Error("--check changed a host's /srv")
		}
	})

	t.Run("json with each machine's steps", func(t *testing.T) {
		out, _, err := fx.run(ctx, append(append([]string{"-o", "json"}, base...), "--check", pbFile)...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var got struct {
			Machines []struct {
				ID, Result string
				Steps      []struct{ Where, Step, Status string }
			}
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		if len(got.Machines) != 4 || len(got.Machines[0].Steps) != 3 || got.Machines[0].Steps[2].Where != pbFile+":7" ||
			got.Machines[0].Steps[2].Status != "would-change" || got.Machines[0].Steps[1].Status != "unchanged" || got.Machines[0].Steps[0].Status != "would-change" {
			t.Errorf("json: %+v", got)
		}
	})

	t.Run("list", func(t *testing.T) {
		out, _, err := fx.run(ctx, "playbook", "list")
		if err != nil || !strings.Contains(out, "deploy") || !strings.Contains(out, "service (required)") {
			t.Errorf("list: %v\n%s", err, out)
		}
		out, _, err = fx.run(ctx, "playbook", "show", "deploy")
		if err != nil || !strings.HasPrefix(out, "name: deploy\n") {
			t.Errorf("show: %v\n%s", err, out)
		}
	})
}
