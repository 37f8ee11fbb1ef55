package ipmisim

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// This package's own tests use 127.0.10.200-127.0.10.220 (inside the ipmi
// range, above what the ipmi tests allocate).

func ipmitool(t *testing.T, b *BMC, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := []string{"-I", "lanplus", "-C", "3", "-H", b.Addr.String(), "-U", b.Username, "-E"}
	cmd := exec.CommandContext(ctx, "ipmitool", append(base, args...)...)
	cmd.Env = []string{"IPMITOOL_PASSWORD=" + b.Password}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ipmitool %v: %v: %s", args, err, out)
	}
	return string(out)
}

func TestStartPowerBootAndCalls(t *testing.T) {
	bmcs := Start(t, Options{N: 2, First: netip.MustParseAddr("127.0.10.200")})
	if got, want := bmcs[1].Addr.String(), "127.0.10.201"; got != want {
		t.Fatalf("second sim on %s, want %s", got, want)
	}
	b := bmcs[0]
	if out := ipmitool(t, b, "chassis", "power", "status"); !strings.Contains(out, "off") {
		t.Fatalf("power status = %q, want off", out)
	}
	ipmitool(t, b, "chassis", "power", "on")
	if on, err := b.Power(); err != nil || !on {
		t.Fatalf("Power() = %v, %v; want on", on, err)
	}
	ipmitool(t, b, "chassis", "bootdev", "pxe")
	if dev, err := b.Boot(); err != nil || dev != "pxe" {
		t.Fatalf("Boot() = %q, %v; want pxe", dev, err)
	}
	sets, err := b.Sets()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"set power 1", "set boot pxe"}; strings.Join(sets, ";") != strings.Join(want, ";") {
		t.Fatalf("Sets() = %q, want %q", sets, want)
	}
}

func TestFreezeThaw(t *testing.T) {
	b := Start(t, Options{First: netip.MustParseAddr("127.0.10.210")})[0]
	if err := b.Freeze(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := ping(ctx, b.Addr, b.Port, 1); err == nil {
		t.Fatal("frozen sim answered a ping")
	}
	if err := b.Thaw(); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := b.waitReady(ctx2); err != nil {
		t.Fatalf("thawed sim: %v", err)
	}
}

func TestFRUAndHook(t *testing.T) {
	dir := t.TempDir()
	hook := "#!/bin/sh\necho \"$@\" >> " + filepath.Join(dir, "hook.log") + "\n"
	b := Start(t, Options{
		First: netip.MustParseAddr("127.0.10.215"),
		FRU:   &FRU{Manufacturer: "Ironrack", Product: "Sim", Serial: "SN-%d", PartNumber: "P1"},
		Hook:  hook,
	})[0]
	out := ipmitool(t, b, "fru", "print", "0")
	for _, want := range []string{"SN-0", "Ironrack", "P1"} {
		if !strings.Contains(out, want) {
			t.Errorf("fru print lacks %q:\n%s", want, out)
		}
	}
	ipmitool(t, b, "chassis", "bootdev", "pxe")
	ipmitool(t, b, "chassis", "power", "on")
	ipmitool(t, b, "chassis", "power", "off")
	log, err := os.ReadFile(filepath.Join(dir, "hook.log"))
	if err != nil {
		t.Fatal(err)
	}
	want := "on " + b.Dir + " pxe\noff " + b.Dir + "\n"
	if string(log) != want {
		t.Fatalf("hook log = %q, want %q", log, want)
	}
}

func TestFRUEncodeChecksums(t *testing.T) {
	data, err := FRU{Manufacturer: "M", Product: "P", Serial: "S", PartNumber: "N"}.encode()
	if err != nil {
		t.Fatal(err)
	}
	if checksum(data[:7]) != data[7] {
		t.Fatal("header checksum")
	}
	board := data[8 : 8+int(data[9])*8]
	var s byte
	for _, c := range board {
		s += c
	}
	if s != 0 {
		t.Fatalf("board area sums to %#x, want 0", s)
	}
}
