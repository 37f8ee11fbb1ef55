package netpolicy

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/inventory"
)

// lanMachines are three tiers on the test LAN.
func lanMachines() []*inventory.Machine {
	return []*inventory.Machine{
		{ID: "ing", IP: "10.77.0.11", Tier: "ingestion"},
		{ID: "sto", IP: "10.77.0.21", Tier: "storage"},
		{ID: "qry", IP: "10.77.0.31", Tier: "query"},
	}
}

const lanPolicy = `admins: [10.77.0.200]
rules:
  - from: {tier: ingestion}
    to: {tier: storage}
    ports: [9100/tcp]
  - from: {tier: query}
    to: {tier: storage}
    ports: [9101/udp]
`

func mustPolicy(t *testing.T, src string, ms []*inventory.Machine) *Policy {
	t.Helper()
	p, err := Parse("lan.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Check(Known{Tiers: tierNames, Machines: ms}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGoldenRulesetsLoad: real nft takes every golden ruleset.
func TestGoldenRulesetsLoad(t *testing.T) {
	netns.Require(t, "nft")
	guardRootRuleset(t)
	files, _ := filepath.Glob("testdata/*.nft")
	if len(files) < 3 {
		t.Fatalf("golden files: %v", files)
	}
	ns := netns.New(t)
	for _, f := range files {
		if out, err := ns.Output(10*time.Second, "nft", "-f", f); err != nil {
			t.Errorf("%s: %v %s", f, err, out)
		}
	}
}

// TestApplyAllowsAndDenies applies the policy to three hosts, confirming
// each over a new connection through the new rules, then checks real TCP
// and UDP connections, allowed and denied; plan then shows nothing to do
// and the records in Consul say confirmed.
func TestApplyAllowsAndDenies(t *testing.T) {
	ms := lanMachines()
	l := newLAN(t, ms...)
	agent := consuldev.T(t)
	sto := l.hosts["sto"]
	sto.listenTCP(t, 9100)
	sto.listenUDP(t, 9101)
	ing, qry := l.hosts["ing"], l.hosts["qry"]
	if !reachSoon(qry.ns, "tcp", "10.77.0.21:9100") || !reachSoon(ing.ns, "udp", "10.77.0.21:9101") {
		t.Fatal("before the firewall, the probes must get through")
	}
	p := mustPolicy(t, lanPolicy, ms)
	fw := &Firewall{Dial: l.dialer(t), Records: &Records{Client: agent.Client(t), Who: "test"}, ConfirmWithin: 20 * time.Second}
	ctx := context.Background()
	c := Compile(p, ms)
	for _, m := range ms {
		res, err := fw.Apply(ctx, m, c.Render(m), true)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Confirmed {
			t.Fatalf("%s: not confirmed", m.ID)
		}
	}
	checks := []struct {
		from        *testHost
		proto, addr string
		want        bool
	}{
		{ing, "tcp", "10.77.0.21:9100", true},
		{qry, "tcp", "10.77.0.21:9100", false},
		{qry, "udp", "10.77.0.21:9101", true},
		{ing, "udp", "10.77.0.21:9101", false},
		{ing, "tcp", "10.77.0.21:22", false}, // SSH only from admins
	}
	for _, ck := range checks {
		got := reach(ck.from.ns, ck.proto, ck.addr)
		if ck.want && !got {
			got = reachSoon(ck.from.ns, ck.proto, ck.addr)
		}
		if got != ck.want {
			t.Errorf("%s -> %s/%s: reached %v, want %v", ck.from.m.ID, ck.addr, ck.proto, got, ck.want)
		}
	}
	if !reachSoon(l.admin, "tcp", "10.77.0.21:22") {
		t.Error("admin -> storage SSH denied")
	}
	for _, m := range ms {
		hs, err := fw.Read(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if d := Diff(hs, c.Render(m)); len(d) > 0 {
			t.Errorf("%s: plan after apply is not empty: %v", m.ID, d)
		}
		rec, err := fw.Records.Get(ctx, m.ID)
		if err != nil || rec == nil || !rec.Confirmed || rec.Version != c.Render(m).Version {
			t.Errorf("%s: record %+v, %v", m.ID, rec, err)
		}
		if pending, err := fw.Pending(ctx, m); err != nil || pending {
			t.Errorf("%s: rollback still pending after confirm (%v)", m.ID, err)
		}
	}
	// A plan against a changed policy names the rules by comment.
	p2 := mustPolicy(t, lanPolicy+"  - from: {tier: query}\n    to: {tier: storage}\n    ports: [9102/tcp]\n", ms)
	hs, _ := fw.Read(ctx, ms[1])
	d2 := strings.Join(Diff(hs, Compile(p2, ms).Render(ms[1])), "\n")
	if !strings.Contains(d2, "~ rules: version") || strings.Count(d2, "+ rule: policy line 9: from tier query") != 2 || strings.Contains(d2, "- rule") {
		t.Errorf("plan for a new rule:\n%s", d2)
	}
	// A plan against a changed inventory names the set elements.
	more := append(lanMachines(), &inventory.Machine{ID: "ing2", IP: "10.77.0.12", Tier: "ingestion"})
	hs, _ = fw.Read(ctx, ms[1])
	d := strings.Join(Diff(hs, Compile(p, more).Render(more[1])), "\n")
	if !strings.Contains(d, "+ tier_ingestion_v4 10.77.0.12") || strings.Contains(d, "rules") {
		t.Errorf("plan for a new ingestion machine:\n%s", d)
	}
}

// TestRollbackRestoresAccess: a ruleset that cuts SSH off cannot be
// confirmed over a new connection; the detached timer on the host brings
// the previous ruleset back and SSH answers again.
func TestRollbackRestoresAccess(t *testing.T) {
	ms := lanMachines()[:1]
	l := newLAN(t, ms...)
	fw := &Firewall{Dial: l.dialer(t), ConfirmWithin: 3 * time.Second}
	ctx := context.Background()
	good := Render(mustPolicy(t, lanPolicy, ms), ms, ms[0])
	if _, err := fw.Apply(ctx, ms[0], good, true); err != nil {
		t.Fatal(err)
	}
	// Admins elsewhere: the admin namespace's SSH is cut off.
	bad := Render(mustPolicy(t, strings.Replace(lanPolicy, "10.77.0.200", "10.77.0.250", 1), ms), ms, ms[0])
	start := time.Now()
	res, err := fw.Apply(ctx, ms[0], bad, true)
	if err == nil || res == nil || res.Confirmed {
		t.Fatalf("apply of a ruleset that blocks SSH confirmed: %+v, %v", res, err)
	}
	t.Logf("refused as expected: %v", err)
	if reach(l.admin, "tcp", "10.77.0.11:22") {
		t.Fatal("SSH answers under the bad ruleset: the test proves nothing")
	}
	deadline := start.Add(10 * time.Second)
	for !reach(l.admin, "tcp", "10.77.0.11:22") {
		if time.Now().After(deadline) {
			t.Fatalf("SSH not back 10s after the apply (timer 3s); host table:\n%s", l.hosts["ing"].table(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(start)
	if took < 2500*time.Millisecond {
		t.Errorf("SSH back after %v, before the 3s timer", took)
	}
	t.Logf("SSH back %v after the apply", took.Round(10*time.Millisecond))
	hs, err := fw.Read(ctx, ms[0])
	if err != nil || hs.Version != good.Version {
		t.Fatalf("after the rollback the host runs %+v (%v), want the good version %s", hs, err, good.Version)
	}
	err = fw.Confirm(ctx, ms[0], bad.Version)
	if !errors.Is(err, ErrRolledBack) {
		t.Errorf("confirm after the rollback: %v, want ErrRolledBack", err)
	}
}

// TestRollbackToNothing: without a previous ironrack table, the rollback
// deletes the table, leaving the host as it was.
func TestRollbackToNothing(t *testing.T) {
	ms := lanMachines()[:1]
	l := newLAN(t, ms...)
	fw := &Firewall{Dial: l.dialer(t), ConfirmWithin: 2 * time.Second}
	ctx := context.Background()
	rs := Render(mustPolicy(t, lanPolicy, ms), ms, ms[0])
	if _, err := fw.Apply(ctx, ms[0], rs, false); err != nil {
		t.Fatal(err)
	}
	if pending, err := fw.Pending(ctx, ms[0]); err != nil || !pending {
		t.Fatalf("no rollback pending after an unconfirmed apply (%v)", err)
	}
	time.Sleep(3 * time.Second)
	if tbl := l.hosts["ing"].table(t); !strings.Contains(tbl, "No such file") && tbl != "" {
		t.Fatalf("table still there after the rollback:\n%s", tbl)
	}
}
