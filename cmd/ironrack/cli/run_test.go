package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/internal/sshhosts"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/fanout"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// runFixture is an inventory whose machines of tier "web" are real sshd
// hosts: machine i's IP is host i's.
type runFixture struct {
	cli   *cliEnv
	hosts *sshhosts.Cluster
	ids   []string // sorted; ids[i] is at hosts.Hosts[i]
	flags []string // --identity, --known-hosts, --connect-timeout
}

func newRunFixture(t *testing.T, n int) *runFixture {
	c := newCLI(t)
	hosts := sshhosts.Start(t, n)
	var sheet strings.Builder
	sheet.WriteString("rack,slot,serial,bmc_address,bmc_username,bmc_password,macs\n")
	for i := range n {
		fmt.Fprintf(&sheet, "r1,%d,SNRUN%02d,127.0.31.%d,admin,pw,52:54:00:31:00:%02x\n", i+1, i+1, i+1, i+1)
	}
	f := filepath.Join(t.TempDir(), "sheet.csv")
	os.WriteFile(f, []byte(sheet.String()), 0o600)
	c.ok("inventory", "import", f)
	client, err := api.NewClient(&api.Config{Address: c.addr})
	if err != nil {
		t.Fatal(err)
	}
	st := inventory.New(client, inventory.Config{})
	ms, err := st.List(context.Background(), inventory.Query{})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
	fx := &runFixture{cli: c, hosts: hosts,
		flags: []string{"--identity", hosts.KeyFile, "--known-hosts", hosts.KnownHosts, "--connect-timeout", "1s"}}
	for i, m := range ms {
		ip := hosts.Hosts[i].IP
		if _, err := st.Update(context.Background(), m.ID, inventory.System, inventory.Change{What: "test"}, func(m *inventory.Machine) error {
			m.IP, m.Tier = ip, "web"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		fx.ids = append(fx.ids, m.ID)
	}
	return fx
}

func (fx *runFixture) run(ctx context.Context, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	full := append([]string{"ironrack", "--consul", fx.cli.addr, "--key-file", fx.cli.key}, args...)
	err := Run(ctx, full, nil, &out, &errb)
	return out.String(), errb.String(), err
}

func TestRunCommand(t *testing.T) {
	fx := newRunFixture(t, 6)
	ctx := context.Background()
	flags := fx.flags
	cmd := []string{"--", `id=$(cat /srv/ident); if [ "$id" = h05 ]; then echo broken; exit 1; fi; echo hello`}

	t.Run("one unreachable, one exits 1: folded output, summary, non-zero exit", func(t *testing.T) {
		fx.hosts.Hosts[2].SetUnreachable(true)
		defer fx.hosts.Hosts[2].SetUnreachable(false)
		args := append(append([]string{"run", "--tier", "web", "--max-fail", "2"}, flags...), cmd...)
		out, _, err := fx.run(ctx, args...)
		if err == nil || !strings.Contains(err.Error(), "2 of 6 machines failed") {
			t.Fatalf("err %v, want 2 of 6 failed\n%s", err, out)
		}
		ok := []string{fx.ids[0], fx.ids[1], fx.ids[3], fx.ids[5]}
		for _, want := range []string{
			"\n" + fanout.FoldHosts(ok) + "\n", "hello\n", "\n" + fx.ids[4] + "\n", "broken\n",
			"MACHINE", fx.ids[4] + "  1 ", "failed", fx.ids[2], "unreachable: connect", "4 ok, 1 failed, 1 unreachable",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("IDs, json, a batch stopping the run", func(t *testing.T) {
		args := append(append([]string{"-o", "json", "run", "--batch", "2"}, flags...), append(fx.ids[2:], cmd...)...)
		out, _, err := fx.run(ctx, args...)
		if err == nil || !strings.Contains(err.Error(), "aborted: batch 2") {
			t.Fatalf("err %v", err)
		}
		var got struct {
			Machines []struct {
				ID, Result, Output string
				Exit               int
			}
			Batches []int
			Aborted string
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		var res []string
		for _, m := range got.Machines {
			res = append(res, fmt.Sprintf("%s %s %d %q", m.ID, m.Result, m.Exit, m.Output))
		}
		want := []string{
			fmt.Sprintf("%s ok 0 %q", fx.ids[2], "hello\n"),
			fmt.Sprintf("%s ok 0 %q", fx.ids[3], "hello\n"),
			fmt.Sprintf("%s failed 1 %q", fx.ids[4], "broken\n"),
			fmt.Sprintf("%s ok 0 %q", fx.ids[5], "hello\n"),
		}
		if strings.Join(res, "\n") != strings.Join(want, "\n") || len(got.Batches) != 2 || got.Aborted == "" {
			t.Errorf("got\n%s\nbatches %v aborted %q; want\n%s", strings.Join(res, "\n"), got.Batches, got.Aborted, strings.Join(want, "\n"))
		}
	})

	t.Run("a changed host key is refused naming the machine and both fingerprints", func(t *testing.T) {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		wrong, _ := ssh.NewPublicKey(pub)
		b, _ := os.ReadFile(fx.hosts.KnownHosts)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		lines[1] = knownhosts.Line([]string{knownhosts.Normalize(fx.hosts.Hosts[1].Addr)}, wrong)
		kh := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(kh, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		out, _, err := fx.run(ctx, "run", "--identity", fx.hosts.KeyFile, "--known-hosts", kh, "--max-fail", "1", fx.ids[0], fx.ids[1], "--", "true")
		if err == nil {
			t.Fatal("run with a changed host key succeeded")
		}
		for _, want := range []string{fx.ids[1], "host key mismatch", ssh.FingerprintSHA256(wrong), ssh.FingerprintSHA256(fx.hosts.Hosts[1].HostKey)} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("Ctrl-C prints what is in flight, then ends the remote commands", func(t *testing.T) {
		marker := fmt.Sprintf("700.%d", time.Now().UnixNano()%1e9)
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(1500*time.Millisecond, cancel)
		args := append(append([]string{"run", "--tier", "web"}, flags...), "--", "sleep", marker)
		start := time.Now()
		out, errs, err := fx.run(cctx, args...)
		if err == nil || time.Since(start) > 10*time.Second {
			t.Fatalf("err %v after %v", err, time.Since(start))
		}
		if !strings.Contains(errs, "interrupted: 6 machines in flight") {
			t.Errorf("stderr:\n%s", errs)
		}
		for _, id := range fx.ids {
			if !strings.Contains(errs, id+"  sleep "+marker+"  running for ") {
				t.Errorf("stderr does not show %s in flight:\n%s", id, errs)
			}
		}
		if !strings.Contains(out, "6 cancelled") {
			t.Errorf("summary:\n%s", out)
		}
		for _, h := range fx.hosts.Hosts {
			if p := h.Procs(marker); len(p) > 0 {
				t.Errorf("%s still runs %v", h.Name, p)
			}
		}
	})

	t.Run("where", func(t *testing.T) {
		args := append(append([]string{"run", "--where", fmt.Sprintf(`tier == "web" and id in [%q, %q]`, fx.ids[1], fx.ids[3])}, flags...), "--", "cat", "/srv/ident")
		out, _, err := fx.run(ctx, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "h02\n") || !strings.Contains(out, "h04\n") || strings.Contains(out, "h01") || !strings.Contains(out, "2 ok") {
			t.Errorf("want machines %s and %s (hosts h02, h04):\n%s", fx.ids[1], fx.ids[3], out)
		}
	})

	t.Run("hosts file", func(t *testing.T) {
		dir := t.TempDir()
		hf := filepath.Join(dir, "hosts")
		os.WriteFile(hf, []byte("# bench hosts\nweb1 "+fx.hosts.Hosts[0].IP+"\n\n"+fx.hosts.Hosts[1].Addr+"  # by address\n"), 0o600)
		out, _, err := fx.run(ctx, append(append([]string{"run", "--hosts-file", hf}, flags...), "--", "cat", "/srv/ident")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{"web1\n", "h01\n", fx.hosts.Hosts[1].Addr + "\n", "h02\n", "2 ok"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		bad := filepath.Join(dir, "bad")
		os.WriteFile(bad, []byte("a 10.0.0.1\nb c d\n"), 0o600)
		if _, _, err := fx.run(ctx, "run", "--hosts-file", bad, "--", "true"); err == nil || !strings.Contains(err.Error(), bad+":2:") {
			t.Errorf("err %v, want %s:2", err, bad)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for args, want := range map[string]string{
			"run --tier web true":                                  "no command",
			"run --tier web --batch 0 -- true":                     "--batch",
			"run " + fx.ids[0] + " --fanout 3 -- true":             "put flags first",
			"run -- true":                                          "name machines by ID",
			"run --tier web --known-hosts /nonexistent/kh -- true": "--known-hosts /nonexistent/kh",
		} {
			a := strings.Fields(args)
			_, _, err := fx.run(ctx, append([]string{"run", "--identity", fx.hosts.KeyFile}, a[1:]...)...)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("ironrack %s: err %v, want %q", args, err, want)
			}
		}
	})
}
