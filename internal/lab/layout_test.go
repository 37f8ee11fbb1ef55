package lab

import (
	"net/netip"
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
