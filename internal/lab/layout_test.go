package lab

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayout: distinct MACs, serials, BMC addresses and taps; machines spread
// over the racks; the last K UEFI; some variety of memory, CPUs and disks.
func TestLayout(t *testing.T) {
	c := Config{Name: "x", Machines: 8, Racks: 3, UEFI: 2, Secret: "s", Subnet: netip.MustParsePrefix("10.213.7.0/24")}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	l := c.Layout()
	if l.Server.String() != "10.213.7.2" || l.HostIP.String() != "10.213.7.1" {
		t.Errorf("server %s host %s", l.Server, l.HostIP)
	}
	seen := map[string]bool{}
	racks := map[string]int{}
	mems, cpus, disks := map[int]bool{}, map[int]bool{}, map[int]bool{}
	uefi := 0
	for _, m := range l.Machines {
		for _, v := range []string{m.MAC, m.Serial, m.BMC.String(), m.Tap, m.BMCPassword} {
			if seen[v] {
				t.Errorf("machine %d: %s repeats", m.Index, v)
			}
			seen[v] = true
		}
		if !netip.MustParsePrefix("10.213.7.0/24").Contains(m.BMC) || m.BMC == l.Server || m.BMC == l.HostIP ||
			!m.BMC.Less(l.DHCPFirst) {
			t.Errorf("machine %d: BMC %s outside its range", m.Index, m.BMC)
		}
		racks[m.Rack]++
		mems[m.MemMiB], cpus[m.CPUs], disks[len(m.DisksGiB)] = true, true, true
		if m.UEFI {
			uefi++
			if m.Index <= 6 {
				t.Errorf("machine %d is UEFI; want the last 2", m.Index)
			}
		}
	}
	if len(racks) != 3 || racks["r1"] != 3 || racks["r3"] != 2 {
		t.Errorf("racks %v, want 3,3,2", racks)
	}
	if uefi != 2 || len(mems) < 2 || len(cpus) < 2 || len(disks) < 2 {
		t.Errorf("uefi %d, memory %v, cpus %v, disk counts %v: want 2 UEFI and variety", uefi, mems, cpus, disks)
	}
	if c2 := (Config{Name: "x", Machines: 1, Racks: 1, Secret: "t"}); c2.password(1) == c.password(1) {
		t.Error("BMC passwords do not depend on the lab's secret")
	}
	for _, bad := range []Config{{Name: "X", Racks: 1}, {Name: "x", Machines: MaxMachines + 1, Racks: 1}, {Name: "x", Machines: 1, Racks: 1, UEFI: 2}, {Name: "x"}} {
		if bad.Check() == nil {
			t.Errorf("%+v passed Check", bad)
		}
	}
}

// TestChooseSubnet: the name's /24 unless taken, then the next free one.
func TestChooseSubnet(t *testing.T) {
	p, err := chooseSubnet("x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !subnetBase.Contains(p.Addr()) || p.Bits() != 24 {
		t.Fatalf("%s is not a /24 of %s", p, subnetBase)
	}
	q, err := chooseSubnet("x", []netip.Prefix{p})
	if err != nil {
		t.Fatal(err)
	}
	if q == p || q.Overlaps(p) {
		t.Errorf("taken %s chosen again (%s)", p, q)
	}
	if _, err := chooseSubnet("x", []netip.Prefix{subnetBase}); err == nil {
		t.Error("a fully taken range gave a subnet")
	}
}

// TestLayoutDisks: --disks N=GIB,... replaces machine N's disks; bad ones
// are refused naming the flag and the machine.
func TestLayoutDisks(t *testing.T) {
	c := Config{Name: "x", Machines: 4, Racks: 2, Secret: "s", Subnet: netip.MustParsePrefix("10.213.7.0/24"), Disks: map[int][]int{2: {4, 4}, 4: {3}}}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	l := c.Layout()
	for i, want := range [][]int{{4}, {4, 4}, {8, 2}, {3}} {
		if got := l.Machines[i].DisksGiB; DisksText(got) != DisksText(want) {
			t.Errorf("machine %d: disks %v, want %v", i+1, got, want)
		}
	}
	for name, tc := range map[string]struct {
		disks map[int][]int
		want  string
	}{
		"no machine": {map[int][]int{5: {4, 4}}, "--disks 5=4,4: no machine 5 (want 1 to --machines, 4)"},
		"too many":   {map[int][]int{1: {1, 1, 1, 1, 1}}, "--disks 1=1,1,1,1,1: 5 disks, want 1 to 4"},
		"none":       {map[int][]int{1: {}}, "--disks 1=: 0 disks, want 1 to 4"},
		"too big":    {map[int][]int{1: {4, 65}}, "--disks 1=4,65: a disk of 65 GiB, want 1 to 64"},
		"zero":       {map[int][]int{1: {0}}, "--disks 1=0: a disk of 0 GiB, want 1 to 64"},
	} {
		t.Run(name, func(t *testing.T) {
			c := Config{Name: "x", Machines: 4, Racks: 2, Disks: tc.disks}
			if err := c.Check(); err == nil || err.Error() != tc.want {
				t.Errorf("Check: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestQemuArgvPulledDisk: a disk whose backing file is gone is not
// attached at the next power-on; the others are, in order.
func TestQemuArgvPulledDisk(t *testing.T) {
	dir := t.TempDir()
	c := Config{Name: "x", Machines: 3, Racks: 1, Secret: "s", Subnet: netip.MustParsePrefix("10.213.7.0/24")}
	l := c.Layout()
	m := l.Machines[2] // 8 and 2 GiB
	if err := writeMachine(dir, m); err != nil {
		t.Fatal(err)
	}
	drives := func() []string {
		var out []string
		argv := qemuArgv(dir, l, m)
		for i, a := range argv {
			if a == "-drive" && strings.HasPrefix(argv[i+1], "file=") {
				out = append(out, filepath.Base(strings.SplitN(strings.TrimPrefix(argv[i+1], "file="), ",", 2)[0]))
			}
		}
		return out
	}
	if got := strings.Join(drives(), " "); got != "disk0.img disk1.img" {
		t.Fatalf("drives %q, want both", got)
	}
	if err := os.Remove(filepath.Join(machineDir(dir, m), "disk0.img")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(drives(), " "); got != "disk1.img" {
		t.Errorf("drives with disk0 pulled: %q, want disk1.img alone", got)
	}
}
