package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ironrack/ironrack/agent/wire"
)

// FetchInstructions gets GET base/api/v1/deploy (wire.DeployPath) with the boot token,
// retrying network errors and 5xx answers with jittered backoff until ctx
// is done. A 4xx answer (a bad token, nothing to deploy) is final.
func (p *Poster) FetchInstructions(ctx context.Context) (wire.Instructions, error) {
	client, sleep := p.Client, p.Sleep
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	url := strings.TrimRight(p.URL, "/") + wire.DeployPath
	wait := backoffMin
	for attempt := 1; ; attempt++ {
		in, err := p.fetchOnce(ctx, client, url)
		var perm *PermanentError
		if err == nil || errors.As(err, &perm) {
			return in, err
		}
		if p.Log != nil {
			fmt.Fprintf(p.Log, "ironrack-agent: deploy instructions attempt %d: %v\n", attempt, err)
		}
		if serr := sleep(ctx, wait/2+rand.N(wait/2+1)); serr != nil {
			return wire.Instructions{}, fmt.Errorf("no deploy instructions after %d attempts: %w (last: %v)", attempt, serr, err)
		}
		wait = min(2*wait, backoffMax)
	}
}

func (p *Poster) fetchOnce(ctx context.Context, client *http.Client, url string) (wire.Instructions, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return wire.Instructions{}, &PermanentError{Body: err.Error()}
	}
	if p.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return wire.Instructions{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch s := resp.StatusCode; {
	case s == http.StatusOK:
	case s/100 == 4 && s != http.StatusRequestTimeout && s != http.StatusTooManyRequests:
		return wire.Instructions{}, &PermanentError{Status: s, Body: strings.TrimSpace(string(body))}
	default:
		return wire.Instructions{}, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var in wire.Instructions
	if err := json.Unmarshal(body, &in); err != nil {
		return wire.Instructions{}, &PermanentError{Status: resp.StatusCode, Body: "undecodable instructions: " + err.Error()}
	}
	if err := in.Validate(); err != nil {
		return wire.Instructions{}, &PermanentError{Status: resp.StatusCode, Body: err.Error()}
	}
	return in, nil
}

// ChooseDisk applies rule to the disks under fsys's sys/block: the first,
// in kernel name order, that is not removable, not read-only, not a
// loop/ram/optical device (see Collect) and holds at least MinBytes.
func ChooseDisk(fsys fs.FS, rule wire.DiskRule) (Disk, error) {
	var seen []string
	for _, d := range disks(fsys) {
		dir := "sys/block/" + d.Name
		switch {
		case readText(fsys, dir+"/removable") == "1":
			seen = append(seen, d.Name+" (removable)")
		case readText(fsys, dir+"/ro") == "1":
			seen = append(seen, d.Name+" (read-only)")
		case int64(d.SizeBytes) < rule.MinBytes:
			seen = append(seen, fmt.Sprintf("%s (%d bytes)", d.Name, d.SizeBytes))
		default:
			return d, nil
		}
	}
	if len(seen) == 0 {
		seen = []string{"none"}
	}
	return Disk{}, fmt.Errorf("no disk fits %d bytes (disks: %s)", rule.MinBytes, strings.Join(seen, ", "))
}

// ErrChecksum is a written image whose sha256 is not the expected one.
var ErrChecksum = errors.New("sha256 mismatch")

// Streamer writes an image from the boot server to a disk: one pass over
// the network, each byte hashed as it is written (the disk is never read
// back), resumed with an HTTP Range request from the last written offset
// when the connection breaks (a boot server restarted mid-deploy).
type Streamer struct {
	// Client is the HTTP client. If nil, one with no overall timeout (an
	// image takes minutes) and a 30s wait for response headers.
	Client *http.Client
	// Sleep waits between attempts. If nil, a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Idle is how long a body read may stall before the attempt is
	// abandoned and resumed. If 0, 30s.
	Idle time.Duration
	// Progress, if set, is called after each write with the bytes written
	// so far; it must be quick (the caller rate-limits what it reports).
	Progress func(written int64)
	// Log receives one line per failed attempt. If nil, discarded.
	Log io.Writer
	// BufSize is the copy buffer. If 0, 4 MiB.
	BufSize int
}

// Result is what a stream did.
type Result struct {
	Written  int64
	SHA256   string
	Attempts int
	// Resumed counts the attempts that continued with a Range request.
	Resumed int
}

// Stream writes url's body (size bytes, sha256 want) to dst from offset 0
// and checks the hash. It retries until ctx is done. A hash mismatch
// returns ErrChecksum (with what was written); a server that answers 4xx
// is final.
func (s *Streamer) Stream(ctx context.Context, url string, size int64, want string, dst io.WriterAt) (Result, error) {
	client, sleep, logw := s.Client, s.Sleep, s.Log
	if client == nil {
		client = &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 30 * time.Second, DisableCompression: true}}
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	if logw == nil {
		logw = io.Discard
	}
	idle := s.Idle
	if idle == 0 {
		idle = 30 * time.Second
	}
	bufSize := s.BufSize
	if bufSize == 0 {
		bufSize = 4 << 20
	}
	buf := make([]byte, bufSize)
	w := &hashingWriter{dst: dst, h: sha256.New(), progress: s.Progress}
	var res Result
	wait := backoffMin
	for res.Attempts = 1; ; res.Attempts++ {
		err := s.attempt(ctx, client, url, size, w, buf, idle, &res)
		if err == nil {
			break
		}
		var perm *PermanentError
		if errors.As(err, &perm) {
			res.Written = w.off
			return res, err
		}
		fmt.Fprintf(logw, "ironrack-agent: image stream attempt %d at offset %d: %v\n", res.Attempts, w.off, err)
		if serr := sleep(ctx, wait/2+rand.N(wait/2+1)); serr != nil {
			res.Written = w.off
			return res, fmt.Errorf("image not written after %d attempts (%d of %d bytes): %w (last: %v)", res.Attempts, w.off, size, serr, err)
		}
		wait = min(2*wait, 5*time.Second)
	}
	res.Written = w.off
	res.SHA256 = hex.EncodeToString(w.h.Sum(nil))
	if res.SHA256 != strings.ToLower(want) {
		return res, fmt.Errorf("%w: wrote %d bytes with sha256 %s, want %s", ErrChecksum, res.Written, res.SHA256, want)
	}
	return res, nil
}

// attempt is one request from w.off to the end.
func (s *Streamer) attempt(ctx context.Context, client *http.Client, url string, size int64, w *hashingWriter, buf []byte, idle time.Duration, res *Result) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return &PermanentError{Body: err.Error()}
	}
	if w.off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", w.off))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && w.off > 0:
		start, total, err := contentRange(resp.Header.Get("Content-Range"))
		if err != nil || start != w.off || total != size {
			return &PermanentError{Status: resp.StatusCode, Body: fmt.Sprintf("Content-Range %q for a request from %d of %d", resp.Header.Get("Content-Range"), w.off, size)}
		}
		res.Resumed++
	case resp.StatusCode == http.StatusOK:
		if w.off > 0 {
			// The server ignored the Range: start over, hash and all.
			w.reset()
		}
		if resp.ContentLength >= 0 && resp.ContentLength != size {
			return &PermanentError{Status: resp.StatusCode, Body: fmt.Sprintf("image is %d bytes, instructions say %d", resp.ContentLength, size)}
		}
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &PermanentError{Status: resp.StatusCode, Body: strings.TrimSpace(string(msg))}
	default:
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	// A stalled read cancels the request; each read re-arms the timer.
	timer := time.AfterFunc(idle, cancel)
	defer timer.Stop()
	body := &idleReader{r: resp.Body, timer: timer, idle: idle}
	if _, err := io.CopyBuffer(w, io.LimitReader(body, size-w.off), buf); err != nil {
		return err
	}
	if w.off != size {
		return fmt.Errorf("stream ended at %d of %d bytes", w.off, size)
	}
	return nil
}

// contentRange parses "bytes START-END/TOTAL".
func contentRange(s string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("content-range %q", s)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	a, _, ok2 := strings.Cut(rng, "-")
	if !ok || !ok2 {
		return 0, 0, fmt.Errorf("content-range %q", s)
	}
	if start, err = strconv.ParseInt(a, 10, 64); err != nil {
		return 0, 0, err
	}
	if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
		return 0, 0, err
	}
	return start, total, nil
}

// hashingWriter writes to dst at off and hashes exactly the bytes written.
type hashingWriter struct {
	dst      io.WriterAt
	h        hash.Hash
	off      int64
	progress func(int64)
}

func (w *hashingWriter) Write(p []byte) (int, error) {
	n, err := w.dst.WriteAt(p, w.off)
	w.h.Write(p[:n])
	w.off += int64(n)
	if w.progress != nil {
		w.progress(w.off)
	}
	if err != nil {
		return n, fmt.Errorf("write disk at %d: %w", w.off, err)
	}
	return n, nil
}

func (w *hashingWriter) reset() {
	w.h.Reset()
	w.off = 0
}

type idleReader struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.timer.Reset(r.idle)
	return n, err
}

// MiB is the size zeroed at each end of a disk by Wipe, and at the start of
// a disk whose image failed to verify.
const MiB = 1 << 20

// ZeroRange writes n zero bytes at off.
func ZeroRange(dst io.WriterAt, off, n int64) error {
	zero := make([]byte, min(n, 4*MiB))
	for done := int64(0); done < n; {
		k := min(int64(len(zero)), n-done)
		if _, err := dst.WriteAt(zero[:k], off+done); err != nil {
			return fmt.Errorf("zero %d bytes at %d: %w", k, off+done, err)
		}
		done += k
	}
	return nil
}

// WipeDisk clears what makes a disk bootable or mountable: its first and
// last MiB (the MBR and primary GPT at the start, the backup GPT at the end,
// and the superblocks of ext4, XFS and most file systems, which sit in the
// first MiB), or the whole disk when it is smaller than 2 MiB.
func WipeDisk(dst io.WriterAt, size int64) error {
	if size <= 2*MiB {
		return ZeroRange(dst, 0, size)
	}
	if err := ZeroRange(dst, 0, MiB); err != nil {
		return err
	}
	return ZeroRange(dst, size-MiB, MiB)
}

// Throttle reports progress at most every step percent and no more often
// than every interval (the first call and 100% always pass).
type Throttle struct {
	Step     int
	Interval time.Duration
	Now      func() time.Time
	last     int
	at       time.Time
	started  bool
}

// Due reports whether percent should be reported now.
func (t *Throttle) Due(percent int) bool {
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	n := now()
	if !t.started || percent == 100 && t.last != 100 || percent-t.last >= t.Step && n.Sub(t.at) >= t.Interval {
		t.started, t.last, t.at = true, percent, n
		return true
	}
	return false
}

// ErrDrift is a deploy whose root-disk hint was applied to disks the agent
// does not see: one gone, added or changed since the record's facts.
var ErrDrift = errors.New("drift")

// ChooseDisks applies rule to the disks under fsys's sys/block. FirstFit
// is ChooseDisk's one disk. Hint checks that the disks the agent sees are
// the record's (rule.Known: same names, sizes and rotational flags, and
// serial, model and WWN where both sides know them) — the hint chose from
// those, so it would choose the same here — and returns rule.Disks as seen,
// each writable and holding at least MinBytes. A difference is ErrDrift,
// naming both sides.
func ChooseDisks(fsys fs.FS, rule wire.DiskRule) ([]Disk, error) {
	if rule.Rule != wire.Hint {
		d, err := ChooseDisk(fsys, rule)
		if err != nil {
			return nil, err
		}
		return []Disk{d}, nil
	}
	seen := disks(fsys)
	same := pairDisks(rule.Known, seen)
	var diffs []string
	taken := make(map[string]bool, len(same))
	for _, k := range rule.Known {
		d, ok := same[k.Name]
		if !ok {
			diffs = append(diffs, k.Name+" is gone")
			continue
		}
		taken[d.Name] = true
		name := k.Name
		if d.Name != k.Name {
			name = fmt.Sprintf("%s (now %s)", k.Name, d.Name)
		}
		if why := diskDiffers(k, d); why != "" {
			diffs = append(diffs, name+" "+why)
		}
	}
	for _, d := range seen {
		if !taken[d.Name] {
			diffs = append(diffs, fmt.Sprintf("%s is new (%d bytes)", d.Name, d.SizeBytes))
		}
	}
	if len(diffs) > 0 {
		return nil, fmt.Errorf("%w: root disk hint %q was applied to the recorded disks, and this machine's differ: %s",
			ErrDrift, rule.Hint, strings.Join(diffs, "; "))
	}
	out := make([]Disk, 0, len(rule.Disks))
	for _, want := range rule.Disks {
		d, ok := same[want.Name]
		dir := "sys/block/" + d.Name
		switch {
		case !ok:
			return nil, fmt.Errorf("root disk %s is not among the recorded disks", want.Name)
		case readText(fsys, dir+"/removable") == "1":
			return nil, fmt.Errorf("root disk %s is removable", d.Name)
		case readText(fsys, dir+"/ro") == "1":
			return nil, fmt.Errorf("root disk %s is read-only", d.Name)
		case int64(d.SizeBytes) < rule.MinBytes:
			return nil, fmt.Errorf("root disk %s holds %d bytes, the image needs %d", d.Name, d.SizeBytes, rule.MinBytes)
		}
		out = append(out, d)
	}
	return out, nil
}

// pairDisks pairs each recorded disk (by its recorded name) with the disk
// seen now that is the same drive (wire.PairDisks: by WWN, serial, then
// name). A recorded disk with no pair is gone.
func pairDisks(known []wire.Disk, seen []Disk) map[string]Disk {
	rec := make([]wire.DiskKey, len(known))
	for i, k := range known {
		rec[i] = wire.DiskKey{Name: k.Name, WWN: k.WWN, Serial: k.Serial}
	}
	now := make([]wire.DiskKey, len(seen))
	for i, d := range seen {
		now[i] = wire.DiskKey{Name: d.Name, WWN: d.WWN, Serial: d.Serial}
	}
	pairs := make(map[string]Disk, len(known))
	for i, j := range wire.PairDisks(rec, now) {
		if j >= 0 {
			pairs[known[i].Name] = seen[j]
		}
	}
	return pairs
}

// diskDiffers says how the disk seen differs from the recorded one, or "".
func diskDiffers(rec wire.Disk, d Disk) string {
	var why []string
	if rec.SizeBytes != d.SizeBytes {
		why = append(why, fmt.Sprintf("size %d, recorded %d", d.SizeBytes, rec.SizeBytes))
	}
	if rec.Rotational != d.Rotational {
		why = append(why, fmt.Sprintf("rotational %t, recorded %t", d.Rotational, rec.Rotational))
	}
	for _, f := range []struct{ name, rec, seen string }{{"serial", rec.Serial, d.Serial}, {"model", rec.Model, d.Model}, {"wwn", rec.WWN, d.WWN}} {
		r, s := strings.TrimSpace(f.rec), strings.TrimSpace(f.seen)
		if r != "" && s != "" && r != s {
			why = append(why, fmt.Sprintf("%s %q, recorded %q", f.name, s, r))
		}
	}
	return strings.Join(why, ", ")
}
