package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ironrack/ironrack/provision/httpboot"
)

// TestReportParses: what the agent sends is what the boot server's strict
// parser takes, field for field.
func TestReportParses(t *testing.T) {
	for _, root := range []string{"testdata/qemu-bios", "testdata/uefi-no-smbios"} {
		f, err := Collect(os.DirFS(root))
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(f.Report())
		if err != nil {
			t.Fatal(err)
		}
		rep, err := httpboot.ParseReport(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v\n%s", root, err, b)
		}
		want := &httpboot.Facts{MACs: []string{}, CPUs: f.CPUs, MemoryBytes: f.MemoryBytes, Serial: f.Serial, Vendor: f.Vendor, Product: f.Product}
		for _, n := range f.NICs {
			want.MACs = append(want.MACs, n.MAC)
		}
		for _, d := range f.Disks {
			want.Disks = append(want.Disks, httpboot.Disk{Name: d.Name, SizeBytes: d.SizeBytes, Serial: d.Serial})
		}
		if diff := cmp.Diff(want, rep.Facts); diff != "" {
			t.Errorf("%s: parsed facts (-want +got):\n%s", root, diff)
		}
	}
}

func TestPosterRetries(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/report" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "bad request", http.StatusUnauthorized)
			return
		}
		if calls.Add(1) < 3 {
			http.Error(w, "consul unavailable", http.StatusServiceUnavailable)
			return
		}
		if _, err := httpboot.ParseReport(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	var waits []time.Duration
	p := &Poster{URL: srv.URL + "/", Token: "tok", Sleep: func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		return nil
	}}
	f, _ := Collect(os.DirFS("testdata/qemu-bios"))
	if err := p.Post(context.Background(), f.Report()); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || len(waits) != 2 {
		t.Fatalf("%d calls, %d waits; want 3 and 2", calls.Load(), len(waits))
	}
	if waits[0] < backoffMin/2 || waits[0] > backoffMin || waits[1] < backoffMin || waits[1] > 2*backoffMin {
		t.Errorf("waits %v: want jittered in [%v,%v] then [%v,%v]", waits, backoffMin/2, backoffMin, backoffMin, 2*backoffMin)
	}

	// A refused token is final: one call, no retry.
	calls.Store(0)
	p.Token = "wrong"
	err := p.Post(context.Background(), f.Report())
	var perm *PermanentError
	if !errors.As(err, &perm) || perm.Status != http.StatusUnauthorized || calls.Load() != 0 {
		t.Errorf("wrong token: %v after %d handled calls; want a PermanentError 401 at once", err, calls.Load())
	}
}

func TestPosterBoundedByContext(t *testing.T) {
	// Nothing listens: every attempt fails, and the context ends the retries.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := (&Poster{URL: url}).Post(ctx, Report{Kind: "facts", Facts: &ReportFacts{}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("took %v past a 200ms bound", time.Since(start))
	}
}
