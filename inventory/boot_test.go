package inventory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLeasesTokensBootNotes(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	mustImport(t, s, sheet3)
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := s.StoreLease(ctx, Lease{MAC: "52:54:00:00:00:01", IP: "192.0.2.10", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLease(ctx, Lease{MAC: "52:54:00:99:99:99", IP: "192.0.2.11", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLease(ctx, Lease{MAC: "zz", IP: "192.0.2.11"}); err == nil {
		t.Error("malformed MAC stored")
	}
	ls, err := s.Leases(ctx)
	if err != nil || len(ls) != 2 || !ls[0].Expires.Equal(exp) {
		t.Fatalf("leases = %+v, %v", ls, err)
	}
	m, _ := s.Find(ctx, "S1")
	if m.IP != "192.0.2.10" {
		t.Errorf("machine ip = %q", m.IP)
	}
	tok, err := s.IssueBootToken(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := s.VerifyBootToken(ctx, tok); err != nil || id != m.ID {
		t.Errorf("verify = %q, %v", id, err)
	}
	for _, bad := range []string{"", "x", m.ID + ".", tok[:len(tok)-1] + "0", MachineID("S2") + tok[len(m.ID):]} {
		if bad == tok {
			continue
		}
		if _, err := s.VerifyBootToken(ctx, bad); !errors.Is(err, ErrToken) {
			t.Errorf("token %q: err = %v", bad, err)
		}
	}
	tok2, _ := s.IssueBootToken(ctx, m.ID)
	if _, err := s.VerifyBootToken(ctx, tok); !errors.Is(err, ErrToken) || tok2 == tok {
		t.Error("old token still valid after reissue")
	}
	if err := s.NoteBoot(ctx, m.ID, "boot", "agent discover"); err != nil {
		t.Fatal(err)
	}
	h, _ := s.History(ctx, m.ID)
	if last := h[len(h)-1]; last.What != "boot" || !strings.Contains(last.Why, "agent") || last.Who != "boot-server" {
		t.Errorf("last history = %+v", last)
	}
}

func TestCredentialsBatch(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	mustImport(t, s, sheet3)
	ms, _ := s.List(ctx, Query{})
	ghost := &Machine{ID: MachineID("ghost"), BMC: BMC{CredentialRef: "bmc/none"}}
	bare := &Machine{ID: MachineID("bare")}
	creds, errs, err := s.Credentials(ctx, append(ms, ghost, bare))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		want := map[string]string{"S1": "pw1", "S2": "pw2", "S3": "pw3"}[m.Serial]
		if creds[m.ID].Password != want || creds[m.ID].Username != "admin" {
			t.Errorf("%s: %v", m.Serial, creds[m.ID])
		}
	}
	if !errors.Is(errs[ghost.ID], ErrNotFound) || !errors.Is(errs[bare.ID], ErrNotFound) || len(creds) != 3 {
		t.Errorf("errs = %v", errs)
	}
}

// TestLeases6 stores DHCPv6 leases beside the v4 ones: under leases6/, and
// the machine's ip becomes the v6 address only when it had none or an
// IPv6 one.
func TestLeases6(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	mustImport(t, s, sheet3)
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	// S1 has a v4 ip: it keeps it.
	if err := s.StoreLease(ctx, Lease{MAC: "52:54:00:00:00:01", IP: "192.0.2.10", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLease6(ctx, Lease{MAC: "52:54:00:00:00:01", IP: "2001:db8::100", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	// S2 has none: the v6 lease is its ip, and a later v6 lease replaces it.
	for _, ip := range []string{"2001:db8::101", "2001:db8::102"} {
		if err := s.StoreLease6(ctx, Lease{MAC: "52:54:00:00:00:02", IP: ip, Expires: exp}); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []Lease{{MAC: "52:54:00:00:00:02", IP: "192.0.2.12"}, {MAC: "zz", IP: "2001:db8::1"}, {MAC: "52:54:00:00:00:02", IP: "x"}} {
		if err := s.StoreLease6(ctx, bad); err == nil {
			t.Errorf("StoreLease6(%+v) accepted", bad)
		}
	}
	// The batched form: S3 (no ip) takes its v6 lease, S1 keeps its v4 ip,
	// an unknown MAC's lease is stored, a v4 address is refused.
	errs := s.StoreLeases6(ctx, []Lease{
		{MAC: "52:54:00:00:00:03", IP: "2001:db8::103", Expires: exp},
		{MAC: "52:54:00:00:00:01", IP: "2001:db8::110", Expires: exp},
		{MAC: "52:54:00:99:99:99", IP: "2001:db8::199", Expires: exp},
		{MAC: "52:54:00:99:99:98", IP: "192.0.2.99", Expires: exp},
	})
	if errs[0] != nil || errs[1] != nil || errs[2] != nil || errs[3] == nil {
		t.Errorf("StoreLeases6: %v", errs)
	}
	ls, err := s.Leases6(ctx)
	if err != nil || len(ls) != 4 || !ls[0].Expires.Equal(exp) {
		t.Fatalf("leases6 = %+v, %v", ls, err)
	}
	if v4, err := s.Leases(ctx); err != nil || len(v4) != 1 || v4[0].IP != "192.0.2.10" {
		t.Errorf("v4 leases = %+v, %v", v4, err)
	}
	for serial, want := range map[string]string{"S1": "192.0.2.10", "S2": "2001:db8::102", "S3": "2001:db8::103"} {
		if m, _ := s.Find(ctx, serial); m.IP != want {
			t.Errorf("%s ip = %q, want %q", serial, m.IP, want)
		}
	}
}

// TestStoreLeasesUnclaimed checks the Unclaimed hint (a fresh address, no
// machine): such leases are stored without reading their address keys
// first, and a wrong hint (the key exists: another MAC's live lease, or
// the same MAC's own) sends the batch through the usual read, so the hint
// never lets an address be taken twice.
func TestStoreLeasesUnclaimed(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	fresh := func(mac, ip string) Lease {
		return Lease{MAC: mac, IP: ip, Expires: exp, NoMachine: true, Unclaimed: true}
	}
	if errs := s.StoreLeases6(ctx, []Lease{fresh("02:00:00:00:00:01", "2001:db8::1"), fresh("02:00:00:00:00:02", "2001:db8::2")}); errs[0] != nil || errs[1] != nil {
		t.Fatalf("fresh addresses: %v", errs)
	}
	// In one batch: a fresh address, one another MAC holds (live), and a
	// renewal hinted as fresh.
	errs := s.StoreLeases6(ctx, []Lease{
		fresh("02:00:00:00:00:03", "2001:db8::3"),
		fresh("02:00:00:00:00:04", "2001:db8::1"),
		fresh("02:00:00:00:00:02", "2001:db8::2"),
	})
	if errs[0] != nil || !errors.Is(errs[1], ErrAddressInUse) || errs[2] != nil {
		t.Errorf("wrong hints: %v; want nil, ErrAddressInUse, nil", errs)
	}
	ls, err := s.Leases6(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range ls {
		got[l.MAC] = l.IP
	}
	want := map[string]string{"02:00:00:00:00:01": "2001:db8::1", "02:00:00:00:00:02": "2001:db8::2", "02:00:00:00:00:03": "2001:db8::3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("leases6 = %v, want %v", got, want)
	}
	for ip, mac := range map[string]string{"2001:db8::1": "02:00:00:00:00:01", "2001:db8::3": "02:00:00:00:00:03"} {
		kv, _, err := s.c.KV().Get(s.addrKey(ip), nil)
		if err != nil || kv == nil || string(kv.Value) != mac {
			t.Errorf("address key of %s = %v, %v; want %s", ip, kv, err, mac)
		}
	}
	// DHCPv4 leases take the same path.
	if errs := s.StoreLeases(ctx, []Lease{fresh("02:00:00:00:00:05", "10.0.0.5")}); errs[0] != nil {
		t.Errorf("fresh v4 address: %v", errs[0])
	}
	if errs := s.StoreLeases(ctx, []Lease{fresh("02:00:00:00:00:06", "10.0.0.5")}); !errors.Is(errs[0], ErrAddressInUse) {
		t.Errorf("v4 address held by another MAC, hinted fresh: %v; want ErrAddressInUse", errs[0])
	}
}
