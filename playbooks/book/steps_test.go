package book

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/internal/sshdtest"
	"github.com/ironrack/ironrack/internal/treehash"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/fanout"
	"github.com/ironrack/ironrack/playbooks/remote"
)

// dial logs in to a test sshd with the real client (the test server's host
// key is fresh each run, so it is not checked here).
func dial(t *testing.T, s *sshdtest.Server, id string) *remote.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := remote.Dial(ctx, remote.Target{ID: id, Addr: s.Addr, User: s.User},
		remote.Options{HostKeyCallback: ssh.InsecureIgnoreHostKey(), Auth: []ssh.AuthMethod{ssh.PublicKeys(s.Signer)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func statuses(rs []StepResult) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.Status))
	}
	return out
}

// systemctlStandIn writes a systemctl stand-in that records its arguments
// in log, one call a line.
func systemctlStandIn(t *testing.T, path, log string) {
	t.Helper()
	script := "#!/bin/sh\necho \"$*\" >> '" + log + "'\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// Each step kind on a real sshd: applied, then idempotent, then --check
// reports drift and changes nothing on disk.
func TestStepsOnSSHD(t *testing.T) {
	s := sshdtest.Start(t)
	c := dial(t, s, "m-1")
	dir := t.TempDir()
	host := filepath.Join(dir, "host") // the host's tree
	local := filepath.Join(dir, "local")
	for _, d := range []string{host, local} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	blob := filepath.Join(local, "blob")
	if err := os.WriteFile(blob, []byte("payload\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "systemctl")
	systemctlStandIn(t, bin, filepath.Join(host, "systemctl.log"))
	pbFile := filepath.Join(local, "pb.yaml")
	if err := os.WriteFile(pbFile, []byte(`vars:
  root:
  svc: app
  systemctl:
steps:
  - only-if: test -d {{sq .Vars.root}}
  - run:
      cmd: mkdir -p {{sq .Vars.root}}/etc && echo made > {{sq .Vars.root}}/made
      unless: test -e {{sq .Vars.root}}/made
  - copy: {src: `+blob+`, dest: '{{.Vars.root}}/etc/blob', mode: "0640", owner: "root:root"}
  - template: {content: "id={{.Machine.ID}} rack={{.Machine.Rack}} svc={{.Vars.svc}}\n", dest: '{{.Vars.root}}/etc/app.conf'}
  - service: {name: '{{.Vars.svc}}', action: restart, systemctl: '{{.Vars.systemctl}}'}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	pb, err := LoadFile(pbFile)
	if err != nil {
		t.Fatal(err)
	}
	m := &inventory.Machine{ID: "m-1", Rack: "r7"}
	vars := map[string]string{"root": host, "systemctl": bin}
	hp, err := pb.Plan(m, vars, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	apply := func(check bool) []string {
		t.Helper()
		var out strings.Builder
		rs, err := hp.Apply(ctx, c, &out, Options{Check: check})
		t.Logf("check=%v:\n%s", check, out.String())
		if err != nil {
			t.Fatal(err)
		}
		return statuses(rs)
	}
	checkNoChange := func(want []string) {
		t.Helper()
		before := treehash.Of(t, host)
		if diff := cmp.Diff(want, apply(true)); diff != "" {
			t.Errorf("check (-want +got):\n%s", diff)
		}
		if after := treehash.Of(t, host); after != before {
			t.Errorf("--check changed the host's tree:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	}

	// On a fresh host, --check would change everything and changes nothing.
	checkNoChange([]string{"unchanged", "would-change", "would-change", "would-change", "would-change"})
	if diff := cmp.Diff([]string{"unchanged", "changed", "changed", "changed", "changed"}, apply(false)); diff != "" {
		t.Errorf("first apply (-want +got):\n%s", diff)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(host, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	mode := func(name string) os.FileMode {
		fi, err := os.Stat(filepath.Join(host, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	if got := read("etc/blob"); got != "payload\n" || mode("etc/blob") != 0o640 {
		t.Errorf("blob %q mode %v", got, mode("etc/blob"))
	}
	if got := read("etc/app.conf"); got != "id=m-1 rack=r7 svc=app\n" || mode("etc/app.conf") != 0o644 {
		t.Errorf("app.conf %q mode %v", got, mode("etc/app.conf"))
	}
	if got := read("systemctl.log"); got != "restart app\n" {
		t.Errorf("systemctl calls %q", got)
	}
	// Again: only the service restarts; --check says so and writes nothing.
	checkNoChange([]string{"unchanged", "unchanged", "unchanged", "unchanged", "would-change"})
	if diff := cmp.Diff([]string{"unchanged", "unchanged", "unchanged", "unchanged", "changed"}, apply(false)); diff != "" {
		t.Errorf("second apply (-want +got):\n%s", diff)
	}
	// Drift: a mode, a content. --check names it and leaves it.
	if err := os.Chmod(filepath.Join(host, "etc/blob"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "etc/app.conf"), []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkNoChange([]string{"unchanged", "unchanged", "would-change", "would-change", "would-change"})
	var out strings.Builder
	rs, err := hp.Apply(ctx, c, &out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rs[2].Detail != "set mode 0600 → 0640" || !strings.HasPrefix(rs[3].Detail, "rewrite content sha256 ") {
		t.Errorf("details: %q, %q", rs[2].Detail, rs[3].Detail)
	}
	if mode("etc/blob") != 0o640 || read("etc/app.conf") != "id=m-1 rack=r7 svc=app\n" {
		t.Error("drift not repaired")
	}
	if got := read("systemctl.log"); got != "restart app\nrestart app\nrestart app\n" {
		t.Errorf("systemctl calls %q", got)
	}
	// No temporary files left beside the copies.
	if ents, _ := os.ReadDir(filepath.Join(host, "etc")); len(ents) != 2 {
		t.Errorf("etc holds %d entries, want 2", len(ents))
	}

	// only-if false ends the host's steps without error.
	hp2, err := pb.Plan(m, map[string]string{"root": filepath.Join(dir, "absent"), "systemctl": bin}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs, err = hp2.Apply(ctx, c, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"unchanged", "skipped", "skipped", "skipped", "skipped"}, statuses(rs)); diff != "" {
		t.Errorf("only-if false (-want +got):\n%s", diff)
	}
}

// A failing step stops the host and names FILE:LINE; a copy onto a
// directory is refused; reload goes to systemctl as given.
func TestStepFailures(t *testing.T) {
	s := sshdtest.Start(t)
	c := dial(t, s, "m-2")
	dir := t.TempDir()
	bin := filepath.Join(dir, "systemctl")
	systemctlStandIn(t, bin, filepath.Join(dir, "calls"))
	pb, err := Parse("f.yaml", []byte(`steps:
  - service: {name: web, action: reload, systemctl: `+bin+`}
  - template: {content: x, dest: `+dir+`}
  - run: echo never
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	hp, err := pb.Plan(&inventory.Machine{ID: "m-2"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := hp.Apply(context.Background(), c, nil, Options{})
	if err == nil || !strings.Contains(err.Error(), "f.yaml:3: template: ") || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("err %v", err)
	}
	if diff := cmp.Diff([]string{"changed", "failed"}, statuses(rs)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "calls")); string(b) != "reload web\n" {
		t.Errorf("calls %q", b)
	}
	pb, err = Parse("g.yaml", []byte("steps:\n  - run: exit 3\n  - run: echo never\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	hp, _ = pb.Plan(&inventory.Machine{ID: "m-2"}, nil, nil)
	if _, err := hp.Apply(context.Background(), c, nil, Options{}); err == nil || err.Error() != "g.yaml:2: run: exit status 3" {
		t.Errorf("err %v", err)
	}
	// drain without a Gate fails at the step.
	pb, _ = Parse("h.yaml", []byte("steps:\n  - drain:\n"), nil)
	hp, _ = pb.Plan(&inventory.Machine{ID: "m-2"}, nil, nil)
	if _, err := hp.Apply(context.Background(), c, nil, Options{}); err == nil || !strings.HasPrefix(err.Error(), "h.yaml:2: drain: no Consul") {
		t.Errorf("err %v", err)
	}
}

// Prepared.Work runs a machine's plan and Doing names its current step
// (what Ctrl-C prints); a failed step is exit status 1, not an error.
func TestPreparedWork(t *testing.T) {
	s := sshdtest.Start(t)
	c := dial(t, s, "m-3")
	pb, err := Parse("w.yaml", []byte("steps:\n  - run: echo one\n  - name: last\n    run: exit 4\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &inventory.Machine{ID: "m-3"}
	pr, err := pb.Prepare([]Target{{Machine: m, Host: fanout.Host{ID: "m-3", Addr: s.Addr}}}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := pr.Doing("m-3"); d != "logging in" {
		t.Errorf("doing before: %q", d)
	}
	var out strings.Builder
	code, err := pr.Work(context.Background(), pr.Hosts()[0], c, &out)
	if code != 1 || err != nil {
		t.Errorf("work: %d, %v\n%s", code, err, out.String())
	}
	if d := pr.Doing("m-3"); d != `step 2/2 run "last" (w.yaml:3)` {
		t.Errorf("doing after: %q", d)
	}
	if !strings.Contains(out.String(), "one\n") || !strings.Contains(out.String(), "failed: w.yaml:3: run \"last\": exit status 4") {
		t.Errorf("output:\n%s", out.String())
	}
	if st := pr.Steps()["m-3"]; len(st) != 2 || st[1].Status != Failed {
		t.Errorf("steps: %+v", st)
	}
}
