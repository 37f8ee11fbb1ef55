package ui

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/inventory"
)

// TestTierSizeOverTime: three machines claimed into a tier, one released;
// the tiers page draws the tier's size from history: peak 3, now 2, and
// a later claim shows without a restart.
func TestTierSizeOverTime(t *testing.T) {
	client := consuldev.T(t).Client(t)
	ctx := context.Background()
	s := inventory.New(client, inventory.Config{Sealer: inventory.NewSealer([32]byte{4}), Who: "test"})
	if _, err := s.Import(ctx, "sheet.csv", testSheet(t), inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	ms, err := s.List(ctx, inventory.Query{Rack: "r2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:5] {
		for _, st := range []inventory.State{inventory.StateCommissioning, inventory.StateReady} {
			if _, err := s.SetState(ctx, m.ID, st, inventory.System, inventory.Change{What: "test"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := s.Allocate(ctx, inventory.AllocateRequest{Count: 3, Owner: "q", Tier: "query"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, got[:1], inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(ctx, got[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if e := h[len(h)-1]; e.FromTier != "query" || e.Tier != "" || h[len(h)-2].Tier != "query" {
		t.Fatalf("history does not record the tier moves: %+v", h[len(h)-2:])
	}

	base := startUI(t, s, client, "")
	tok, err := (&Tokens{Client: client}).Create(ctx, "v", RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	if resp, err := c.PostForm(base+"/login", url.Values{"token": {tok}}); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	chart := regexp.MustCompile(`data-tier="query" data-points="(\d+)" data-last="(\d+)" data-peak="(\d+)"`)
	want := func(last, peak string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		var m []string
		for time.Now().Before(deadline) {
			resp, err := c.Get(base + "/tiers")
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(resp)
			resp.Body.Close()
			if m = chart.FindStringSubmatch(body); m != nil && m[2] == last && m[3] == peak {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("query's size chart: %v, want now %s, peak %s", m, last, peak)
	}
	want("2", "3")
	if _, err := s.Allocate(ctx, inventory.AllocateRequest{Count: 2, Owner: "q", Tier: "query"}); err != nil {
		t.Fatal(err)
	}
	want("4", "4")
}

func TestEventsOfLegacyHistory(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &inventory.Machine{ID: "m-1", Tier: "storage", CreatedAt: t0}
	h := []inventory.HistoryEntry{{At: t0, To: inventory.StateNew}, {At: t0.Add(time.Hour), From: inventory.StateReady, To: inventory.StateAllocated},
		{At: t0.Add(2 * time.Hour), From: inventory.StateAllocated, To: inventory.StateDeploying}}
	ev := eventsOf(m, h)
	if len(ev) != 1 || ev[0].Tier != "storage" || ev[0].Delta != 1 || !ev[0].At.Equal(t0.Add(time.Hour)) {
		t.Errorf("legacy history: %+v, want one join of storage at the claim", ev)
	}
}
