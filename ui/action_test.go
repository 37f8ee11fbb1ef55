package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/inventory"
)

// TestActionsThroughWorkflows runs the UI's power and boot actions on a
// real BMC (ipmi_sim) through provision.Fleet: cycling a machine that is on
// is refused without the explicit confirmation and done with it, each
// change lands in history with the token's name as who.
func TestActionsThroughWorkflows(t *testing.T) {
	ipmisim.Require(t)
	bmc := ipmisim.Start(t, ipmisim.Options{First: netip.MustParseAddr("127.0.52.10"), PowerOn: true})[0]
	agent := consuldev.T(t)
	client := agent.Client(t)
	ctx := context.Background()
	s := inventory.New(client, inventory.Config{Sealer: inventory.NewSealer([32]byte{3}), Who: "test"})
	sheet := fmt.Sprintf("rack,slot,serial,bmc_address,bmc_port,bmc_username,bmc_password\nr1,1,ACT1,%s,%d,%s,%s\n",
		bmc.Addr, bmc.Port, bmc.Username, bmc.Password)
	rows, err := inventory.ParseSheet("act.csv", strings.NewReader(sheet))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "act.csv", rows, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Find(ctx, "ACT1")
	if err != nil {
		t.Fatal(err)
	}
	base := startUI(t, s, client, "")
	tok, err := (&Tokens{Client: client}).Create(ctx, "alice", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(base+"/login", url.Values{"token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csrf := csrfOf(t, c, base+"/machines/"+m.ID)
	act := func(form url.Values) (int, string) {
		t.Helper()
		form.Set("csrf", csrf)
		resp, err := c.PostForm(base+"/machines/"+m.ID+"/action", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, readAll(resp)
	}
	lastWho := func() inventory.HistoryEntry {
		h, err := s.History(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		return h[len(h)-1]
	}
	bmc.ClearCalls()

	code, body := act(url.Values{"action": {"power-cycle"}})
	if code != http.StatusConflict || !strings.Contains(body, "reboot-not-allowed") {
		t.Errorf("cycle without confirmation: %d %s", code, body)
	}
	if sets, _ := bmc.Sets(); len(sets) != 0 {
		t.Errorf("the BMC got %v without confirmation", sets)
	}
	code, body = act(url.Values{"action": {"power-cycle"}, "confirm": {"yes"}, "reason": {"hung"}})
	if code != http.StatusOK {
		t.Fatalf("cycle with confirmation: %d %s", code, body)
	}
	if h := lastWho(); h.Who != "alice" || !strings.Contains(h.What, "cycle") || !strings.Contains(h.Why, "hung") {
		t.Errorf("history after the cycle: %+v", h)
	}
	code, body = act(url.Values{"action": {"boot-pxe"}})
	if dev, _ := bmc.Boot(); code != http.StatusOK || dev != "pxe" {
		t.Errorf("boot pxe: %d, boot device %q: %s", code, dev, body)
	}
	code, body = act(url.Values{"action": {"power-off"}, "confirm": {"yes"}})
	if on, _ := bmc.Power(); code != http.StatusOK || on {
		t.Errorf("power off: %d, power on=%v: %s", code, on, body)
	}
	if h := lastWho(); h.Who != "alice" {
		t.Errorf("history after power off: %+v", h)
	}
	code, _ = act(url.Values{"action": {"reboot-everything"}})
	if code != http.StatusBadRequest {
		t.Errorf("unknown action: %d, want 400", code)
	}
}

func TestCheckListen(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:8081": true, "[::1]:8081": true, "localhost:80": true,
		"0.0.0.0:8081": false, "192.0.2.1:443": false, ":8081": false, "example.com:80": false, "nonsense": false} {
		if err := checkListen(addr, false); (err == nil) != want {
			t.Errorf("checkListen(%q, no TLS) = %v, want ok=%v", addr, err, want)
		}
	}
	if err := checkListen("0.0.0.0:8443", true); err != nil {
		t.Errorf("with TLS any address may listen: %v", err)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{"/machines?where=x": "/machines?where=x", "//evil.example/": "/racks",
		"https://evil.example/": "/racks", "": "/racks", "/\\evil": "/racks"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTokens(t *testing.T) {
	client := consuldev.T(t).Client(t)
	ctx := context.Background()
	ts := &Tokens{Client: client, Prefix: "tok"}
	sec, err := ts.Create(ctx, "ops", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := ts.Verify(ctx, sec); err != nil || tok.Name != "ops" || tok.Role != RoleAdmin {
		t.Errorf("Verify(the secret) = %+v, %v", tok, err)
	}
	for _, bad := range []string{"", "ops", "ops.", sec + "x", "other." + strings.SplitN(sec, ".", 2)[1], strings.Repeat("a", 300)} {
		if _, err := ts.Verify(ctx, bad); err == nil {
			t.Errorf("Verify(%q) accepted", bad)
		}
	}
	if _, err := ts.Create(ctx, "ops", RoleViewer); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("a second token ops: %v", err)
	}
	if _, err := ts.Create(ctx, "x", "root"); err == nil {
		t.Error("role root accepted")
	}
	if _, err := ts.Create(ctx, "a.b", RoleViewer); err == nil {
		t.Error("a name with a dot accepted")
	}
	kv, _, _ := client.KV().Get("tok/ui/tokens/ops", nil)
	if kv == nil || strings.Contains(string(kv.Value), strings.SplitN(sec, ".", 2)[1]) {
		t.Errorf("the stored token holds the secret: %s", kv.Value)
	}
	if err := ts.Delete(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Verify(ctx, sec); err == nil {
		t.Error("a deleted token still verifies")
	}
}
