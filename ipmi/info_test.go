package ipmi_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/ipmi"
)

func TestInfoAndFRU(t *testing.T) {
	t.Parallel()
	withFRU := startSims(t, 1, ipmisim.Options{FRU: &ipmisim.FRU{
		Manufacturer: "Ironrack", Product: "R1", Serial: "SN-%d", PartNumber: "PN-7",
	}})[0]
	bare := startSims(t, 1, ipmisim.Options{})[0]
	c := &ipmi.Controller{}
	ctx := context.Background()

	info, err := c.Info(ctx, creds(withFRU))
	if err != nil {
		t.Fatal(err)
	}
	// The emu file's mc_add: manufacturer 0x1291 (4753), product 0xf02,
	// firmware 9.08 (major 9, minor 0x08), IPMI 2.0.
	want := ipmi.Info{ManufacturerID: 4753, ProductID: 0xf02, Firmware: "9.08", IPMIVersion: "2.0", Serial: "SN-0", Provider: "goipmi"}
	if diff := cmp.Diff(want, info, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Manufacturer" }, cmp.Ignore())); diff != "" {
		t.Errorf("Info (-want +got):\n%s", diff)
	}

	fru, err := c.FRU(ctx, creds(withFRU))
	if err != nil {
		t.Fatal(err)
	}
	wantFRU := ipmi.FRU{
		BoardManufacturer: "Ironrack", BoardProduct: "R1", BoardSerial: "SN-0", BoardPartNumber: "PN-7",
		ProductManufacturer: "Ironrack", ProductName: "R1", ProductSerial: "SN-0", ProductPartNumber: "PN-7",
	}
	if diff := cmp.Diff(wantFRU, fru); diff != "" {
		t.Errorf("FRU (-want +got):\n%s", diff)
	}

	if _, err := c.FRU(ctx, creds(bare)); !errors.Is(err, ipmi.ErrUnsupported) {
		t.Errorf("FRU of a sim without one = %v, want ErrUnsupported", err)
	}
	info, err = c.Info(ctx, creds(bare))
	if err != nil || info.Serial != "" || info.Firmware != "9.08" {
		t.Errorf("Info without FRU = %+v, %v; want firmware and no serial", info, err)
	}
}
