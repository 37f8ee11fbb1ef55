package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ironrack/ironrack/agent"
	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/provision/httpboot"
)

// imageServer is the real boot HTTP server (httpboot.Server) serving
// DATA/images/debian/1/root.img on a fixed address in the test's loopback
// range, so it can be stopped and started again on the same address.
type imageServer struct {
	t      *testing.T
	addr   string
	data   string
	cancel context.CancelFunc
	done   chan error
}

func newImageServer(t *testing.T, addr string, img []byte) *imageServer {
	t.Helper()
	data := t.TempDir()
	dir := images.Dir(data, "debian", "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root.img"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(hex.EncodeToString(sum[:])+"  root.img\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &imageServer{t: t, addr: addr, data: data}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *imageServer) start() {
	s.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("listen %s: %v", s.addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := httpboot.New(httpboot.Config{ImageDir: images.Root(s.data), ShutdownTimeout: time.Millisecond, Listener: ln})
	if err != nil {
		s.t.Fatal(err)
	}
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- srv.Serve(ctx) }()
}

// stop shuts the server down (in-flight transfers are cut after 1 ms).
func (s *imageServer) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Errorf("image server: %v", err)
	}
	s.cancel = nil
}

func (s *imageServer) url() string { return "http://" + s.addr + "/images/debian/1/root.img" }

func randomImage(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

func diskFile(t *testing.T, size int64) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readAll(t *testing.T, f *os.File, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func noSleep(ctx context.Context, d time.Duration) error { return ctx.Err() }

// TestStream writes an image from the real boot HTTP server to a file
// standing in for the disk: the bytes match, the sha256 computed while
// streaming matches, and it took one attempt. The server's checksum header
// names the same sum.
func TestStream(t *testing.T) {
	img, sum := randomImage(t, 9<<20+123)
	srv := newImageServer(t, "127.0.31.11:18080", img)
	disk := diskFile(t, 16<<20)
	var last int64
	res, err := (&agent.Streamer{Sleep: noSleep, Progress: func(n int64) { last = n }}).Stream(context.Background(), srv.url(), int64(len(img)), sum, disk)
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != sum || res.Written != int64(len(img)) || res.Attempts != 1 || res.Resumed != 0 || last != int64(len(img)) {
		t.Fatalf("result %+v, progress %d; want sum %s, %d bytes, 1 attempt", res, last, sum, len(img))
	}
	if !bytes.Equal(readAll(t, disk, len(img)), img) {
		t.Fatal("disk differs from the image")
	}
}

// TestStreamResume stops the boot server when half the image is written and
// starts it again a second later on the same address: the stream resumes
// with a Range request from the last written offset and the result is the
// image, verified by the hash kept across the attempts.
func TestStreamResume(t *testing.T) {
	img, sum := randomImage(t, 24<<20)
	srv := newImageServer(t, "127.0.31.12:18080", img)
	disk := diskFile(t, 32<<20)
	var once sync.Once
	restarted := make(chan struct{})
	progress := func(n int64) {
		if n < int64(len(img))/2 {
			return
		}
		once.Do(func() {
			srv.stop() // cuts the transfer in flight
			go func() {
				time.Sleep(time.Second)
				srv.start()
				close(restarted)
			}()
		})
	}
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := (&agent.Streamer{Progress: progress, Log: &log, BufSize: 256 << 10}).Stream(ctx, srv.url(), int64(len(img)), sum, disk)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	<-restarted
	if res.Resumed < 1 || res.Attempts < 2 || res.SHA256 != sum {
		t.Fatalf("result %+v, want at least one resumed attempt and sum %s; log:\n%s", res, sum, log.String())
	}
	if !bytes.Equal(readAll(t, disk, len(img)), img) {
		t.Fatal("disk differs from the image after the resume")
	}
	t.Logf("%d attempts, %d resumed; log:\n%s", res.Attempts, res.Resumed, log.String())
}

// TestStreamChecksumMismatch: an image whose bytes do not hash to the
// expected sum is written once (never read back) and reported as
// ErrChecksum naming both sums.
func TestStreamChecksumMismatch(t *testing.T) {
	img, _ := randomImage(t, 3<<20)
	srv := newImageServer(t, "127.0.31.13:18080", img)
	disk := diskFile(t, 4<<20)
	wrong := strings.Repeat("ab", 32)
	res, err := (&agent.Streamer{Sleep: noSleep}).Stream(context.Background(), srv.url(), int64(len(img)), wrong, disk)
	if !errors.Is(err, agent.ErrChecksum) || !strings.Contains(err.Error(), wrong) {
		t.Fatalf("err %v, want ErrChecksum naming %s", err, wrong)
	}
	if res.Written != int64(len(img)) || res.Attempts != 1 {
		t.Fatalf("result %+v", res)
	}
}

// TestStreamRefused: a 404 is final, not retried.
func TestStreamRefused(t *testing.T) {
	img, sum := randomImage(t, 1<<20)
	srv := newImageServer(t, "127.0.31.14:18080", img)
	disk := diskFile(t, 2<<20)
	_, err := (&agent.Streamer{Sleep: noSleep}).Stream(context.Background(), strings.Replace(srv.url(), "root.img", "nope.img", 1), int64(len(img)), sum, disk)
	var perm *agent.PermanentError
	if !errors.As(err, &perm) || perm.Status != 404 {
		t.Fatalf("err %v, want a permanent 404", err)
	}
}

// TestWipeDisk zeroes the first and last MiB and leaves the middle.
func TestWipeDisk(t *testing.T) {
	const size = 8 << 20
	disk := diskFile(t, size)
	full := bytes.Repeat([]byte{0xff}, size)
	if _, err := disk.WriteAt(full, 0); err != nil {
		t.Fatal(err)
	}
	if err := agent.WipeDisk(disk, size); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, disk, size)
	zero := make([]byte, agent.MiB)
	if !bytes.Equal(got[:agent.MiB], zero) || !bytes.Equal(got[size-agent.MiB:], zero) {
		t.Fatal("first or last MiB not zeroed")
	}
	if !bytes.Equal(got[agent.MiB:size-agent.MiB], full[agent.MiB:size-agent.MiB]) {
		t.Fatal("the middle was touched")
	}
	small := diskFile(t, 1500<<10)
	small.WriteAt(bytes.Repeat([]byte{1}, 1500<<10), 0)
	if err := agent.WipeDisk(small, 1500<<10); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, small, 1500<<10), make([]byte, 1500<<10)) {
		t.Fatal("a small disk is not wiped whole")
	}
}

// TestChooseDisk applies first-fit to a /sys/block tree.
func TestChooseDisk(t *testing.T) {
	fsys := fstest.MapFS{}
	add := func(name string, sectors int, removable, ro string) {
		fsys["sys/block/"+name+"/size"] = &fstest.MapFile{Data: []byte(fmt.Sprint(sectors))}
		fsys["sys/block/"+name+"/removable"] = &fstest.MapFile{Data: []byte(removable)}
		fsys["sys/block/"+name+"/ro"] = &fstest.MapFile{Data: []byte(ro)}
	}
	add("loop0", 1<<30, "0", "0")
	add("sda", 2048, "1", "0")  // removable
	add("sdb", 4096, "0", "1")  // read-only
	add("vda", 1024, "0", "0")  // too small
	add("vdb", 8192, "0", "0")  // fits
	add("vdc", 16384, "0", "0") // fits too, later
	d, err := agent.ChooseDisk(fsys, wire.DiskRule{Rule: wire.FirstFit, MinBytes: 4096 * 512})
	if err != nil || d.Name != "vdb" {
		t.Fatalf("chose %+v, %v; want vdb", d, err)
	}
	_, err = agent.ChooseDisk(fsys, wire.DiskRule{Rule: wire.FirstFit, MinBytes: 1 << 40})
	if err == nil || !strings.Contains(err.Error(), "sda (removable)") || !strings.Contains(err.Error(), "sdb (read-only)") {
		t.Fatalf("err %v, want it to name every disk and why", err)
	}
}

// TestThrottle bounds progress reports: every 5% at most, 2 s apart, and 100%.
func TestThrottle(t *testing.T) {
	now := time.Unix(0, 0)
	th := &agent.Throttle{Step: 5, Interval: 2 * time.Second, Now: func() time.Time { return now }}
	var sent []int
	for pct := 0; pct <= 100; pct++ {
		now = now.Add(300 * time.Millisecond)
		if th.Due(pct) {
			sent = append(sent, pct)
		}
	}
	if len(sent) > 16 || sent[0] != 0 || sent[len(sent)-1] != 100 {
		t.Fatalf("sent %v", sent)
	}
	for i := 1; i < len(sent)-1; i++ {
		if sent[i]-sent[i-1] < 5 {
			t.Fatalf("sent %v: steps under 5%%", sent)
		}
	}
}

// TestChooseDisksHint: the Hint rule writes the disk the boot server chose
// when the disks the agent sees are the recorded ones, and fails as drift
// (naming each difference) when one is gone, new or changed; the chosen
// disk must still be writable and large enough.
func TestChooseDisksHint(t *testing.T) {
	sysfs := func(disks ...wire.Disk) fstest.MapFS {
		fsys := fstest.MapFS{}
		for _, d := range disks {
			dir := "sys/block/" + d.Name
			fsys[dir+"/size"] = &fstest.MapFile{Data: []byte(fmt.Sprint(d.SizeBytes / 512))}
			fsys[dir+"/removable"] = &fstest.MapFile{Data: []byte("0\n")}
			fsys[dir+"/ro"] = &fstest.MapFile{Data: []byte("0\n")}
			fsys[dir+"/device/model"] = &fstest.MapFile{Data: []byte(d.Model + "  \n")}
			fsys[dir+"/device/serial"] = &fstest.MapFile{Data: []byte(d.Serial + "\n")}
			fsys[dir+"/device/wwid"] = &fstest.MapFile{Data: []byte(d.WWN + "\n")}
			rot := "0"
			if d.Rotational {
				rot = "1"
			}
			fsys[dir+"/queue/rotational"] = &fstest.MapFile{Data: []byte(rot + "\n")}
		}
		return fsys
	}
	hdd := wire.Disk{Name: "sda", SizeBytes: 64 << 30, Model: "QEMU HARDDISK", Serial: "DATA", Rotational: true, WWN: "naa.5000c500a1b2c3d4"}
	ssd := wire.Disk{Name: "sdb", SizeBytes: 8 << 30, Model: "QEMU HARDDISK", Serial: "ROOT"}
	rule := wire.DiskRule{Rule: wire.Hint, Hint: "not rotational", MinBytes: 1 << 30, Disks: []wire.Disk{ssd}, Known: []wire.Disk{hdd, ssd}}
	if err := (wire.Instructions{SHA256: strings.Repeat("0", 64), Size: 1, URL: "/images/x", Disk: rule}).Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := agent.ChooseDisks(sysfs(hdd, ssd), rule)
	if err != nil || len(got) != 1 || got[0].Name != "sdb" || got[0].Serial != "ROOT" {
		t.Fatalf("chose %+v, %v; want sdb", got, err)
	}
	bigger := ssd
	bigger.SizeBytes = 16 << 30
	spinning := hdd
	spinning.Serial = "SWAPPED"
	extra := wire.Disk{Name: "sdc", SizeBytes: 4 << 30}
	otherWWN := hdd
	otherWWN.WWN = "naa.5000c500ffffffff"
	for name, tc := range map[string]struct {
		seen []wire.Disk
		want []string
	}{
		"gone":    {[]wire.Disk{ssd}, []string{"sda is gone"}},
		"new":     {[]wire.Disk{hdd, ssd, extra}, []string{"sdc is new (4294967296 bytes)"}},
		"resized": {[]wire.Disk{hdd, bigger}, []string{"sdb size 17179869184, recorded 8589934592"}},
		"swapped": {[]wire.Disk{spinning, ssd}, []string{`sda serial "SWAPPED", recorded "DATA"`}},
		"wwn":     {[]wire.Disk{otherWWN, ssd}, []string{`sda wwn "naa.5000c500ffffffff", recorded "naa.5000c500a1b2c3d4"`}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := agent.ChooseDisks(sysfs(tc.seen...), rule)
			if !errors.Is(err, agent.ErrDrift) {
				t.Fatalf("err %v, want drift", err)
			}
			for _, w := range append(tc.want, `hint "not rotational"`) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %v does not say %q", err, w)
				}
			}
		})
	}
	// The kernel named the two disks the other way round this boot (its
	// SCSI, SATA and NVMe probes race): the same drives, found by WWN and
	// serial, so no drift, and the root disk is written by its name now.
	hddNow, ssdNow := hdd, ssd
	hddNow.Name, ssdNow.Name = "sdb", "sda"
	got, err = agent.ChooseDisks(sysfs(ssdNow, hddNow), rule)
	if err != nil || len(got) != 1 || got[0].Name != "sda" || got[0].Serial != "ROOT" {
		t.Fatalf("renamed disks: chose %+v, %v; want sda (serial ROOT)", got, err)
	}
	// Renamed and changed: the difference names both names.
	ssdNow.SizeBytes = 16 << 30
	if _, err := agent.ChooseDisks(sysfs(ssdNow, hddNow), rule); !errors.Is(err, agent.ErrDrift) || !strings.Contains(err.Error(), "sdb (now sda) size 17179869184, recorded 8589934592") {
		t.Errorf("renamed and resized: %v", err)
	}
	// Disks with no serial and no WWN are paired by name.
	anonA, anonB := wire.Disk{Name: "vda", SizeBytes: 4 << 30}, wire.Disk{Name: "vdb", SizeBytes: 2 << 30}
	anon := wire.DiskRule{Rule: wire.Hint, Hint: "size_bytes < 3e9", MinBytes: 1 << 30, Disks: []wire.Disk{anonB}, Known: []wire.Disk{anonA, anonB}}
	if got, err := agent.ChooseDisks(sysfs(anonA, anonB), anon); err != nil || len(got) != 1 || got[0].Name != "vdb" {
		t.Errorf("anonymous disks: chose %+v, %v; want vdb", got, err)
	}
	// A recorded but unknown field (no WWN in the record) is not drift.
	noWWN := rule
	noWWN.Known = []wire.Disk{{Name: "sda", SizeBytes: hdd.SizeBytes, Model: hdd.Model, Serial: hdd.Serial, Rotational: true}, ssd}
	if _, err := agent.ChooseDisks(sysfs(hdd, ssd), noWWN); err != nil {
		t.Errorf("unrecorded wwn: %v", err)
	}
	small := rule
	small.MinBytes = 9 << 30
	if _, err := agent.ChooseDisks(sysfs(hdd, ssd), small); err == nil || errors.Is(err, agent.ErrDrift) || !strings.Contains(err.Error(), "root disk sdb holds 8589934592 bytes") {
		t.Errorf("too small: %v", err)
	}
	ro := sysfs(hdd, ssd)
	ro["sys/block/sdb/ro"] = &fstest.MapFile{Data: []byte("1\n")}
	if _, err := agent.ChooseDisks(ro, rule); err == nil || !strings.Contains(err.Error(), "root disk sdb is read-only") {
		t.Errorf("read-only: %v", err)
	}
	// The rule's own consistency: a chosen disk that is not known.
	bad := rule
	bad.Disks = []wire.Disk{extra}
	if err := (wire.Instructions{SHA256: strings.Repeat("0", 64), Size: 1, URL: "/images/x", Disk: bad}).Validate(); err == nil || !strings.Contains(err.Error(), "root disk sdc is not among the known disks") {
		t.Errorf("validate: %v", err)
	}
	mirror := rule
	mirror.Layout = "mirror"
	if err := (wire.Instructions{SHA256: strings.Repeat("0", 64), Size: 1, URL: "/images/x", Disk: mirror}).Validate(); err == nil || !strings.Contains(err.Error(), "names 1 disks, layout mirror needs 2") {
		t.Errorf("validate mirror: %v", err)
	}
}
