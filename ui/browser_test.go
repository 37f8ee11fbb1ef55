package ui

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/internal/servetest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/tiers/capacity"
	"github.com/ironrack/ironrack/tiers/plans"
)

// inNSEnv marks the test binary re-run inside the test's namespace.
const inNSEnv = "IRONRACK_UI_IN_NETNS"

// TestBrowser drives Debian's chromium against the UI. The parent creates
// a network namespace with only loopback and re-runs this test binary in it
// (ip netns exec), so Consul, the UI and the browser all run there and no
// request can leave it. Screenshots go to $IRONRACK_UI_ARTIFACTS (else a
// temporary directory), one PNG per page.
func TestBrowser(t *testing.T) {
	if os.Getenv(inNSEnv) == "" {
		netns.Require(t, "chromium")
		ns := netns.New(t)
		dir := os.Getenv("IRONRACK_UI_ARTIFACTS")
		if dir == "" {
			dir = t.TempDir()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		args := []string{"netns", "exec", ns.Name, os.Args[0], "-test.run", "^TestBrowser$", "-test.count=1", "-test.v"}
		cmd := exec.CommandContext(ctx, "ip", args...)
		cmd.Env = append(os.Environ(), inNSEnv+"=1", "IRONRACK_UI_ARTIFACTS="+dir)
		out, err := cmd.CombinedOutput()
		t.Logf("in namespace %s:\n%s", ns.Name, out)
		if err != nil {
			t.Fatalf("the browser test in the namespace failed: %v", err)
		}
		t.Logf("screenshots in %s", dir)
		return
	}
	browserInNS(t)
}

func browserInNS(t *testing.T) {
	if out, err := exec.Command("ip", "-o", "link").Output(); err != nil || strings.Count(string(out), "\n") != 1 {
		t.Fatalf("expected only loopback in the namespace: %s %v", out, err)
	}
	dir := os.Getenv("IRONRACK_UI_ARTIFACTS")
	agent := consuldev.T(t)
	client := agent.Client(t)
	ctx := context.Background()
	s := inventory.New(client, inventory.Config{Sealer: inventory.NewSealer([32]byte{1}), Who: "test"})
	rows := testSheet(t)
	if _, err := s.Import(ctx, "browser.csv", rows, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRack(ctx, inventory.Rack{Name: "r1", Height: 24}); err != nil {
		t.Fatal(err)
	}
	base := startUI(t, s, client, "")
	tokens := &Tokens{Client: client}
	viewer, err := tokens.Create(ctx, "vera", RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := tokens.Create(ctx, "alice", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}

	bctx := newBrowser(t)
	var mu sync.Mutex
	var requests []string
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requests = append(requests, e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(dir, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", p)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	do("login page", chromedp.EmulateViewport(1400, 1000), chromedp.Navigate(base+"/racks"), chromedp.WaitVisible(chromedp.ID("token")))
	shot("login")
	do("log in as the viewer", chromedp.SendKeys(chromedp.ID("token"), viewer), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS("header nav")), chromedp.WaitReady(chromedp.CSS("rect.slot")))

	t.Run("every machine in its slot, front and rear", func(t *testing.T) {
		ms, err := s.List(ctx, inventory.Query{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(bctx, chromedp.Evaluate[[]map[string]string](`Array.from(document.querySelectorAll("rect.slot")).map(r => ({
			id: r.dataset.id, face: r.parentNode.dataset.face, slot: r.dataset.slot, y: r.getAttribute("y"), h: r.getAttribute("height"),
			rack: r.closest("figure").id}))`))
		if err != nil {
			t.Fatal(err)
		}
		drawn := map[string]map[string]string{} // id+face -> attributes
		for _, g := range got {
			drawn[g["id"]+"/"+g["face"]] = g
		}
		heights := map[string]int{"r1": 24, "r2": 42}
		want := 0
		for _, m := range ms {
			slot, _ := strconv.Atoi(m.Slot)
			for _, face := range []string{"front", "rear"} {
				d, ok := drawn[m.ID+"/"+face]
				if m.OnFace(face == "rear") != ok {
					t.Errorf("%s (%s/%s, face %q): drawn on the %s: %v, want %v", m.Serial, m.Rack, m.Slot, m.Face, face, ok, !ok)
					continue
				}
				if !ok {
					continue
				}
				want++
				px := overview.unitPx
				wy := (heights[m.Rack]-(slot+m.Units()-1))*px + 1
				if d["y"] != strconv.Itoa(wy) || d["h"] != strconv.Itoa(m.Units()*px-2) || d["rack"] != "rack-"+m.Rack || d["slot"] != m.Slot {
					t.Errorf("%s (%s/%s, %dU) on the %s: drawn at %v, want y=%d height=%d in rack-%s", m.Serial, m.Rack, m.Slot, m.Units(), face, d, wy, m.Units()*px-2, m.Rack)
				}
			}
		}
		if len(got) != want {
			t.Errorf("%d slots drawn, want %d", len(got), want)
		}
	})

	t.Run("no request leaves the origin", func(t *testing.T) {
		mu.Lock()
		requests = nil
		mu.Unlock()
		do("reload racks", chromedp.Navigate(base+"/racks"), chromedp.WaitReady(chromedp.CSS("rect.slot")), chromedp.Sleep(300*time.Millisecond))
		mu.Lock()
		defer mu.Unlock()
		if len(requests) < 3 {
			t.Errorf("saw only %d requests (%v): is the network domain on?", len(requests), requests)
		}
		for _, u := range requests {
			if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") {
				t.Errorf("request to %s leaves the origin %s", u, base)
			}
		}
	})
	shot("racks")

	t.Run("a state change shows without a reload", func(t *testing.T) {
		m, err := s.Find(ctx, "SN-r2-3")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.__noReload = true`)); err != nil {
			t.Fatal(err)
		}
		do("the stream is live", chromedp.WaitReady(chromedp.CSS(`body[data-live="on"]`)))
		start := time.Now()
		// As `ironrack inventory set-state` does.
		if _, err := s.SetState(ctx, m.ID, inventory.StateBroken, inventory.Operator, inventory.Change{What: "set-state", Why: "browser test"}); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(bctx, 2*time.Second)
		defer cancel()
		sel := fmt.Sprintf(`g[data-face="rear"] rect.st-broken[data-id=%q]`, m.ID)
		if err := chromedp.Do(wctx, chromedp.WaitReady(chromedp.CSS(sel))); err != nil {
			t.Fatalf("%s not shown broken within 2s: %v", m.Serial, err)
		}
		t.Logf("state change shown after %v", time.Since(start).Round(time.Millisecond))
		same, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.__noReload === true`))
		if err != nil || !same {
			t.Errorf("the page was reloaded (%v)", err)
		}
	})

	t.Run("actions refused without a session and for a viewer", func(t *testing.T) {
		m, err := s.Find(ctx, "SN-r1-1")
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{"action": {"set-state"}, "state": {"broken"}, "csrf": {"x"}}
		resp, err := http.PostForm(base+"/machines/"+m.ID+"/action", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("no session: status %d, want 401", resp.StatusCode)
		}
		// The viewer's own session, from its page, with its CSRF token.
		status, err := chromedp.Run(bctx, chromedp.Evaluate[int](fmt.Sprintf(`(async () => {
			const csrf = document.querySelector('input[name=csrf]').value;
			const r = await fetch("/machines/%s/action", {method: "POST", body: new URLSearchParams({action: "set-state", state: "broken", csrf})});
			return r.status; })()`, m.ID), chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusForbidden {
			t.Errorf("viewer: status %d, want 403", status)
		}
		if got, _ := s.Get(ctx, m.ID); got.State != inventory.StateNew {
			t.Errorf("after refused actions %s is %s, want new", m.Serial, got.State)
		}
		// An admin's action goes through, with the token's name as who.
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		if resp, err := c.PostForm(base+"/login", url.Values{"token": {admin}}); err != nil {
			t.Fatal(err)
		} else {
			resp.Body.Close()
		}
		csrf := csrfOf(t, c, base+"/machines/"+m.ID)
		form.Set("csrf", "wrong")
		if resp, err := c.PostForm(base+"/machines/"+m.ID+"/action", form); err != nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("admin with a wrong CSRF token: %v %v, want 403", resp.Status, err)
		}
		form.Set("csrf", csrf)
		form.Set("reason", "PSU smoke")
		resp, err = c.PostForm(base+"/machines/"+m.ID+"/action", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("admin set-state: %s", resp.Status)
		}
		h, err := s.History(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		last := h[len(h)-1]
		if last.Who != "alice" || last.To != inventory.StateBroken || last.Why != "PSU smoke" {
			t.Errorf("history after the admin's action: %+v, want alice: new → broken, PSU smoke", last)
		}
	})

	// A tier with history, for the tiers page: three machines claimed.
	for _, serial := range []string{"SN-r2-4", "SN-r2-5", "SN-r2-6"} {
		m, err := s.Find(ctx, serial)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range []inventory.State{inventory.StateCommissioning, inventory.StateReady} {
			if _, err := s.SetState(ctx, m.ID, st, inventory.System, inventory.Change{What: "test"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.Allocate(ctx, inventory.AllocateRequest{Count: 3, Owner: "q", Tier: "query"}); err != nil {
		t.Fatal(err)
	}

	// The latest scale plan, as `scale plan` stores it.
	plan := capacity.Plan{ReplicationFactor: 2, Input: capacity.Input{EventsPerSec: 250000, RetentionDays: 14, QueriesPerSec: 500, Headroom: 0.3},
		Tiers: []capacity.TierPlan{
			{Tier: "ingestion", Class: "compute", Current: 2, Target: 4, Add: 2, Racks: []capacity.RackCount{{Rack: "r1", Count: 1}, {Rack: "r2", Count: 1}}},
			{Tier: "storage", Class: "storage-dense", Current: 6, Target: 7, Add: 1, Racks: []capacity.RackCount{{Rack: "r2", Count: 1}}},
			{Tier: "query", Class: "compute", Current: 4, Target: 3, Remove: 1}}}
	if err := plans.NewStore(client, "").Save(ctx, plans.Record{At: time.Now(), Stack: "prod", Plan: plan, ShardMoves: 37, ShardNote: "test"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		do("tiers", chromedp.Navigate(base+"/tiers"), chromedp.WaitReady(chromedp.CSS("svg.plan")))
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('svg.size[data-tier="query"][data-last="3"]').length`))
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tiers page: no size chart of query at 3 machines (%v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if moves, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("shard-moves"))); err != nil || moves != "37" {
		t.Errorf("tiers page: shard moves %q (%v), want 37", moves, err)
	}

	// One screenshot of each page.
	m, _ := s.Find(ctx, "SN-r1-1")
	for _, p := range [][2]string{{"machine", "/machines/" + m.ID}, {"rack", "/racks?rack=r1"}, {"racks-tier", "/racks?color=tier"},
		{"machines", "/machines?where=" + url.QueryEscape(`rack == "r2"`)}, {"tiers", "/tiers"}, {"boot", "/boot"}} {
		do(p[0], chromedp.Navigate(base+p[1]), chromedp.WaitReady(chromedp.CSS("main")))
		shot(p[0])
	}
	do("card", chromedp.Navigate(base+"/racks"), chromedp.Click(chromedp.CSS(fmt.Sprintf(`rect[data-id=%q]`, m.ID))),
		chromedp.WaitVisible(chromedp.CSS("#card h3")))
	shot("card")

	// Last: its login replaces the session cookie (cookies are per host,
	// not per port).
	t.Run("the racks page of 2,000 machines renders under 300 ms", func(t *testing.T) {
		ps := inventory.New(client, inventory.Config{Prefix: "perf", Who: "test", Sealer: inventory.NewSealer([32]byte{1})})
		start := time.Now()
		importFleet(t, ps, 2000)
		t.Logf("imported 2,000 machines in %v", time.Since(start).Round(time.Millisecond))
		pbase := startUI(t, ps, client, "perf")
		tok, err := (&Tokens{Client: client, Prefix: "perf"}).Create(ctx, "perf", RoleViewer)
		if err != nil {
			t.Fatal(err)
		}
		do("log in (perf)", chromedp.Navigate(pbase+"/login"), chromedp.SendKeys(chromedp.ID("token"), tok),
			chromedp.Click(chromedp.ID("login")), chromedp.WaitReady(chromedp.CSS("rect.slot")))
		// Let the UI's first pass over the histories (tiers' sizes) end, so
		// it does not compete with the page loads measured.
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			do("tiers (perf)", chromedp.Navigate(pbase+"/tiers"), chromedp.WaitReady(chromedp.CSS("main")))
			if txt, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("main"))); err == nil && strings.Contains(txt, "2000 of 2000 machines read") {
				break
			}
		}
		var fcps []float64
		for i := range 3 {
			do("racks (perf)", chromedp.Navigate(pbase+"/racks"), chromedp.WaitReady(chromedp.CSS("rect.slot")))
			got, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]float64](`new Promise(done => {
				const read = () => {
					const p = performance.getEntriesByName("first-contentful-paint")[0];
					if (!p) { requestAnimationFrame(read); return; }
					const n = performance.getEntriesByType("navigation")[0];
					done({ttfb: n.responseStart - n.startTime, dom: n.domContentLoadedEventEnd - n.startTime,
						load: n.loadEventEnd - n.startTime, fcp: p.startTime,
						slots: document.querySelectorAll("rect.slot").length, bytes: n.transferSize});
				};
				read(); })`, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("load %d: first contentful paint %.0f ms (response start %.0f ms, DOM ready %.0f ms, load %.0f ms), %.0f slots, %.0f KB",
				i+1, got["fcp"], got["ttfb"], got["dom"], got["load"], got["slots"], got["bytes"]/1024)
			if got["slots"] != 4000 {
				t.Errorf("%v slots drawn, want 4000 (2,000 machines, front and rear)", got["slots"])
			}
			fcps = append(fcps, got["fcp"])
		}
		shot("racks-2000")
		sort.Float64s(fcps)
		if fcps[1] <= 0 || fcps[1] >= 300 {
			t.Errorf("median first contentful paint %.0f ms, want under 300 ms", fcps[1])
		}
	})

}

// csrfOf reads the CSRF token from a page.
func csrfOf(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := fmt.Fprint(&b, readAll(resp)); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(b.String())
	if m == nil {
		t.Fatalf("no CSRF token on %s (%s)", u, resp.Status)
	}
	return m[1]
}

func readAll(resp *http.Response) string {
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// testSheet is two racks: r1 (24U) with a 2U machine and a front-only one,
// r2 (42U) with a rear-only 2U machine at the top.
func testSheet(t *testing.T) []inventory.SheetRow {
	var b strings.Builder
	b.WriteString("rack,slot,serial,bmc_address,bmc_username,bmc_password,u_height,face\n")
	n := 0
	row := func(rack string, slot, u int, face string) {
		n++
		fmt.Fprintf(&b, "%s,%d,SN-%s-%d,127.0.41.%d,admin,pw,%d,%s\n", rack, slot, rack, slot, n, u, face)
	}
	for i := 1; i <= 5; i++ {
		row("r1", i, 1, "")
	}
	row("r1", 7, 2, "")
	row("r1", 10, 1, "front")
	row("r1", 24, 1, "both")
	for i := 1; i <= 6; i++ {
		row("r2", i, 1, "")
	}
	row("r2", 41, 2, "rear")
	rows, err := inventory.ParseSheet("browser.csv", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// startUI serves the UI on a loopback port for the test's length.
func startUI(t testing.TB, s *inventory.Store, client *api.Client, prefix string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Store: s, Consul: client, Prefix: prefix, Listener: ln, WatchWait: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	servetest.Run(t, 10*time.Second, srv.Serve)
	return "http://" + ln.Addr().String()
}

// newBrowser starts one headless chromium for the test, with the flags
// known to work here as root.
func newBrowser(t *testing.T) context.Context {
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath("chromium"), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()))
	t.Cleanup(cancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	return bctx
}
