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

	"github.com/ironrack/ironrack/agent/wire"
)

// TestReportParses: what the agent sends is what the agent API's strict
// parser (wire.ParseReport, the boot server's) takes, field for field.
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
		rep, err := wire.ParseReport(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v\n%s", root, err, b)
		}
		want := &wire.Facts{MACs: []string{}, CPUs: f.CPUs, MemoryBytes: f.MemoryBytes, Serial: f.Serial, Vendor: f.Vendor, Product: f.Product,
			CPUModel: f.CPUModel, UUID: f.UUID, Firmware: f.Firmware}
		for _, n := range f.NICs {
			want.MACs = append(want.MACs, n.MAC)
			want.NICs = append(want.NICs, wire.NIC{MAC: n.MAC, Name: n.Name, SpeedMbps: n.SpeedMbps, Driver: n.Driver})
		}
		for _, d := range f.Disks {
			want.Disks = append(want.Disks, wire.Disk{Name: d.Name, SizeBytes: d.SizeBytes, Serial: d.Serial, Model: d.Model, Rotational: d.Rotational})
		}
		if want.CPUModel == "" || want.UUID == "" || want.Firmware == "" || len(want.NICs) == 0 || want.NICs[0].Driver == "" {
			t.Errorf("%s: testdata lacks a fact the report should carry: %+v", root, want)
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
		if _, err := wire.ParseReport(r.Body); err != nil {
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
	err := (&Poster{URL: url}).Post(ctx, wire.Report{Kind: "facts", Facts: &wire.Facts{}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("took %v past a 200ms bound", time.Since(start))
	}
}
