package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ironrack/ironrack/internal/sshhosts"
	"github.com/ironrack/ironrack/playbooks/fanout"
	"github.com/ironrack/ironrack/playbooks/remote"
	"golang.org/x/crypto/ssh"
)

// cmd exits 1 on the host named fail (matched against /srv/ident, which the
// harness writes per host), printing "broken"; elsewhere it prints "hello".
func cmd(fail string) string {
	return fmt.Sprintf(`id=$(cat /srv/ident); if [ "$id" = %q ]; then echo broken; exit 1; fi; echo hello`, fail)
}

func TestFanout(t *testing.T) {
	c := sshhosts.Start(t, 20)
	auth, err := remote.KeyFileAuth(c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	dial := remote.Options{HostKeyCallback: c.HostKeyCallback(), Auth: []ssh.AuthMethod{auth},
		ConnectTimeout: time.Second, KillGrace: time.Second}
	var hosts []fanout.Host
	for i, h := range c.Hosts {
		hosts = append(hosts, fanout.Host{ID: fmt.Sprintf("m-%02d", i+1), Addr: h.Addr})
	}
	ctx := context.Background()
	statuses := func(rep *fanout.Report) map[string]fanout.Status {
		m := map[string]fanout.Status{}
		for _, r := range rep.Results {
			m[r.Host.ID] = r.Status
		}
		return m
	}

	t.Run("20 hosts, one unreachable, one exits 1", func(t *testing.T) {
		c.Hosts[4].SetUnreachable(true)
		defer c.Hosts[4].SetUnreachable(false)
		var mu sync.Mutex
		started, done := 0, 0
		rep, err := fanout.Run(ctx, hosts, fanout.Plan{Dial: dial, Limit: fanout.Limit{MaxFail: 2},
			OnStart: func(fanout.Host) { mu.Lock(); started++; mu.Unlock() },
			OnDone:  func(fanout.Result) { mu.Lock(); done++; mu.Unlock() },
		}, fanout.Command(cmd("h07")))
		if err != nil {
			t.Fatal(err)
		}
		if started != 20 || done != 20 {
			t.Errorf("OnStart %d times, OnDone %d times; want 20 each", started, done)
		}
		want := map[string]fanout.Status{}
		for _, h := range hosts {
			want[h.ID] = fanout.StatusOK
		}
		want["m-05"], want["m-07"] = fanout.StatusUnreachable, fanout.StatusFailed
		if diff := cmp.Diff(want, statuses(rep)); diff != "" {
			t.Errorf("statuses -want +got:\n%s", diff)
		}
		if r := rep.Results[6]; r.Exit != 1 || string(r.Output) != "broken\n" {
			t.Errorf("m-07: exit %d output %q", r.Exit, r.Output)
		}
		if r := rep.Results[4]; !strings.Contains(r.Error, "m-05") || r.Exit != -1 {
			t.Errorf("m-05: exit %d error %q", r.Exit, r.Error)
		}
		if rep.Failed() != 2 || rep.Aborted != "" {
			t.Errorf("failed %d, aborted %q", rep.Failed(), rep.Aborted)
		}
		groups := fanout.Fold(rep.Results)
		var got []string
		for _, g := range groups {
			got = append(got, g.Hosts+": "+string(g.Output))
		}
		if diff := cmp.Diff([]string{"m-[01-04,06,08-20]: hello\n", "m-07: broken\n"}, got); diff != "" {
			t.Errorf("folded -want +got:\n%s", diff)
		}
	})

	t.Run("unreachable counts: exceeding max-fail aborts", func(t *testing.T) {
		c.Hosts[4].SetUnreachable(true)
		defer c.Hosts[4].SetUnreachable(false)
		rep, err := fanout.Run(ctx, hosts, fanout.Plan{Dial: dial, Limit: fanout.Limit{MaxFail: 1}}, fanout.Command(cmd("h07")))
		if !errors.Is(err, fanout.ErrAborted) || !strings.Contains(err.Error(), "more than --max-fail 1") {
			t.Fatalf("err %v: want an abort naming --max-fail", err)
		}
		if rep.Aborted == "" {
			t.Error("report does not say it aborted")
		}
	})

	t.Run("batches run one after another and stop at the threshold", func(t *testing.T) {
		spec, _ := fanout.ParseBatch("1,5,20%")
		// h04 fails, in the second batch (hosts 2-6).
		rep, err := fanout.Run(ctx, hosts, fanout.Plan{Dial: dial, Batches: spec}, fanout.Command(cmd("h04")+"; sleep 0.2"))
		if !errors.Is(err, fanout.ErrAborted) || !strings.Contains(err.Error(), "batch 2") {
			t.Fatalf("err %v: want an abort in batch 2", err)
		}
		if diff := cmp.Diff([]int{1, 5, 4, 4, 4, 2}, rep.Batches); diff != "" {
			t.Errorf("batches -want +got:\n%s", diff)
		}
		for i, r := range rep.Results {
			want := fanout.StatusOK
			switch {
			case i == 3:
				want = fanout.StatusFailed
			case i >= 6:
				want = fanout.StatusSkipped
			}
			if r.Status != want {
				t.Errorf("%s (batch %d): %s, want %s", r.Host.ID, r.Batch, r.Status, want)
			}
		}
		// Batch 2 started only when batch 1 was done.
		end1 := rep.Results[0].Start.Add(rep.Results[0].Duration)
		for _, r := range rep.Results[1:6] {
			if r.Start.Before(end1) {
				t.Errorf("%s of batch 2 started at %v, before batch 1 ended at %v", r.Host.ID, r.Start, end1)
			}
		}
	})

	t.Run("a batch percentage threshold", func(t *testing.T) {
		spec, _ := fanout.ParseBatch("10")
		rep, err := fanout.Run(ctx, hosts, fanout.Plan{Dial: dial, Batches: spec, Limit: fanout.Limit{MaxFailPct: 10}}, fanout.Command(cmd("h07")))
		if err != nil || rep.Failed() != 1 {
			t.Fatalf("1 failure of 10 is 10%%, not above it: err %v, failed %d", err, rep.Failed())
		}
	})

	t.Run("abort-now cancels hosts in flight and their commands", func(t *testing.T) {
		marker := fmt.Sprintf("900.%d", time.Now().UnixNano()%1e9)
		start := time.Now()
		rep, err := fanout.Run(ctx, hosts[:6], fanout.Plan{Dial: dial, AbortNow: true},
			fanout.Command(fmt.Sprintf(`if [ "$(cat /srv/ident)" = h02 ]; then sleep 1; exit 1; fi; sleep %s; true`, marker)))
		if !errors.Is(err, fanout.ErrAborted) {
			t.Fatalf("err %v", err)
		}
		if time.Since(start) > 8*time.Second {
			t.Errorf("abort-now took %v", time.Since(start))
		}
		for i, r := range rep.Results {
			want := fanout.StatusCancelled
			if i == 1 {
				want = fanout.StatusFailed
			}
			if r.Status != want {
				t.Errorf("%s: %s, want %s (%s)", r.Host.ID, r.Status, want, r.Error)
			}
		}
		for _, h := range c.Hosts[:6] {
			if p := h.Procs(marker); len(p) > 0 {
				t.Errorf("%s still runs %v", h.Name, p)
			}
		}
	})

	t.Run("without abort-now, hosts in flight finish", func(t *testing.T) {
		rep, err := fanout.Run(ctx, hosts[:4], fanout.Plan{Dial: dial},
			fanout.Command(`if [ "$(cat /srv/ident)" = h02 ]; then exit 1; fi; sleep 1; echo done`))
		if !errors.Is(err, fanout.ErrAborted) {
			t.Fatalf("err %v", err)
		}
		for i, r := range rep.Results {
			if i != 1 && (r.Status != fanout.StatusOK || string(r.Output) != "done\n") {
				t.Errorf("%s: %s %q", r.Host.ID, r.Status, r.Output)
			}
		}
	})

	t.Run("fanout caps hosts in flight", func(t *testing.T) {
		var mu sync.Mutex
		inflight, peak := 0, 0
		_, err := fanout.Run(ctx, hosts, fanout.Plan{Dial: dial, Fanout: 3,
			OnStart: func(fanout.Host) {
				mu.Lock()
				inflight++
				peak = max(peak, inflight)
				mu.Unlock()
			},
			OnDone: func(fanout.Result) { mu.Lock(); inflight--; mu.Unlock() },
		}, fanout.Command("sleep 0.1"))
		if err != nil {
			t.Fatal(err)
		}
		if peak != 3 {
			t.Errorf("peak in flight %d, want 3", peak)
		}
	})

	t.Run("timeout ends the command on the host", func(t *testing.T) {
		marker := fmt.Sprintf("800.%d", time.Now().UnixNano()%1e9)
		rep, err := fanout.Run(ctx, hosts[:2], fanout.Plan{Dial: dial, Timeout: time.Second, Limit: fanout.Limit{MaxFail: 2}},
			fanout.Command("sleep "+marker+"; true"))
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rep.Results {
			if r.Status != fanout.StatusTimeout || !strings.Contains(r.Error, "timed out") {
				t.Errorf("%s: %s %q", r.Host.ID, r.Status, r.Error)
			}
			if p := c.Hosts[i].Procs(marker); len(p) > 0 {
				t.Errorf("%s still runs %v after the timeout", c.Hosts[i].Name, p)
			}
		}
	})
}
