package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/ironrack/ironrack/agent/wire"
)

// Report is the facts report the agent API takes: every fact but the
// memory source, which only the console shows.
func (f Facts) Report() wire.Report {
	rf := &wire.Facts{
		MACs: []string{}, CPUs: f.CPUs, MemoryBytes: f.MemoryBytes, Disks: []wire.Disk{},
		Serial: f.Serial, Vendor: f.Vendor, Product: f.Product,
		CPUModel: f.CPUModel, UUID: f.UUID, Firmware: f.Firmware,
	}
	for _, n := range f.NICs {
		rf.MACs = append(rf.MACs, n.MAC)
		rf.NICs = append(rf.NICs, wire.NIC{MAC: n.MAC, Name: n.Name, SpeedMbps: n.SpeedMbps, Driver: n.Driver})
	}
	for _, d := range f.Disks {
		rf.Disks = append(rf.Disks, wire.Disk{Name: d.Name, SizeBytes: d.SizeBytes, Serial: d.Serial, Model: d.Model, Rotational: d.Rotational, WWN: d.WWN})
	}
	return wire.Report{Kind: "facts", Facts: rf}
}

// Poster posts reports to the boot server's agent API.
type Poster struct {
	// URL is the boot server's base URL (ironrack.url). Required.
	URL string
	// Token is this boot's token (ironrack.token).
	Token string
	// Client is the HTTP client. If nil, one with a 10s timeout per attempt.
	Client *http.Client
	// Sleep waits d or until ctx is done. If nil, a timer; tests make it instant.
	Sleep func(ctx context.Context, d time.Duration) error
	// Log receives one line per failed attempt. If nil, discarded.
	Log io.Writer
}

// PermanentError is a report the server refused for good (4xx other than
// 408 and 429): retrying cannot help.
type PermanentError struct {
	Status int
	Body   string
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("server refused the report: %d %s", e.Status, e.Body)
}

// Backoff bounds: the first retry waits about backoffMin, each later one
// twice as long up to backoffMax, each with full jitter over its upper half.
const (
	backoffMin = 500 * time.Millisecond
	backoffMax = 10 * time.Second
)

// Post sends r to POST URL/api/v1/report (wire.ReportPath), retrying network errors and 5xx,
// 408 and 429 answers with jittered exponential backoff until ctx is done.
// The caller bounds the total time with ctx.
func (p *Poster) Post(ctx context.Context, r wire.Report) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	client, sleep, log := p.Client, p.Sleep, p.Log
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	if log == nil {
		log = io.Discard
	}
	url := strings.TrimRight(p.URL, "/") + wire.ReportPath
	wait := backoffMin
	for attempt := 1; ; attempt++ {
		err := p.once(ctx, client, url, body)
		var perm *PermanentError
		if err == nil || errors.As(err, &perm) {
			return err
		}
		fmt.Fprintf(log, "ironrack-agent: report attempt %d: %v\n", attempt, err)
		d := wait/2 + rand.N(wait/2+1)
		if serr := sleep(ctx, d); serr != nil {
			return fmt.Errorf("report not delivered after %d attempts: %w (last: %v)", attempt, serr, err)
		}
		wait = min(2*wait, backoffMax)
	}
}

func (p *Poster) once(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return &PermanentError{Body: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	if p.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch s := resp.StatusCode; {
	case s/100 == 2:
		return nil
	case s/100 == 4 && s != http.StatusRequestTimeout && s != http.StatusTooManyRequests:
		return &PermanentError{Status: s, Body: strings.TrimSpace(string(msg))}
	default:
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
