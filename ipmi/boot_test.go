package ipmi_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/ipmi"
)

func TestSetBootDevice(t *testing.T) {
	t.Parallel()
	type out struct {
		ReadBack ipmi.BootOverride
		Warnings []ipmi.WarningCode
		SimBoot  string // what the chassis script stored, in ipmi_sim's words
	}
	dropped := []ipmi.WarningCode{ipmi.WarnPersistentDropped, ipmi.WarnEFIDropped, ipmi.WarnNotValid}
	tests := map[string]struct {
		dev  ipmi.BootDevice
		opts ipmi.BootOptions
		want out
	}{
		// ipmi_sim never reads back the valid bit...
		"pxe once": {ipmi.BootPXE, ipmi.BootOptions{},
			out{ipmi.BootOverride{Device: ipmi.BootPXE}, []ipmi.WarningCode{ipmi.WarnNotValid}, "pxe"}},
		"disk once": {ipmi.BootDisk, ipmi.BootOptions{},
			out{ipmi.BootOverride{Device: ipmi.BootDisk}, []ipmi.WarningCode{ipmi.WarnNotValid}, "default"}},
		"bios once": {ipmi.BootBIOS, ipmi.BootOptions{},
			out{ipmi.BootOverride{Device: ipmi.BootBIOS}, []ipmi.WarningCode{ipmi.WarnNotValid}, "bios"}},
		// ...and drops persistent and EFI: reported, not silent.
		"pxe persistent efi": {ipmi.BootPXE, ipmi.BootOptions{Persistent: true, EFI: true},
			out{ipmi.BootOverride{Device: ipmi.BootPXE}, dropped, "pxe"}},
		"disk persistent": {ipmi.BootDisk, ipmi.BootOptions{Persistent: true},
			out{ipmi.BootOverride{Device: ipmi.BootDisk}, []ipmi.WarningCode{ipmi.WarnPersistentDropped, ipmi.WarnNotValid}, "default"}},
	}
	bmcs := startSims(t, len(tests), ipmisim.Options{})
	i := 0
	for name, tc := range tests {
		b := bmcs[i]
		i++
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := &ipmi.Controller{}
			res, err := c.SetBootDevice(context.Background(), creds(b), tc.dev, tc.opts)
			if err != nil {
				t.Fatalf("SetBootDevice: %v", err)
			}
			if res.ReadBack == nil {
				t.Fatal("no read-back from goipmi")
			}
			got := out{ReadBack: *res.ReadBack}
			for _, w := range res.Warnings {
				got.Warnings = append(got.Warnings, w.Code)
			}
			if got.SimBoot, err = b.Boot(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			rb, err := c.BootDevice(context.Background(), creds(b))
			if err != nil || rb != *res.ReadBack {
				t.Errorf("BootDevice = %+v, %v; want %+v", rb, err, *res.ReadBack)
			}
		})
	}
}

// TestBootSetRefused: the sim's chassis script fails the set. go-ipmi sees
// the completion code; ipmitool exits 0 but bmclib's provider and our
// classification still report it.
func TestBootSetRefused(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		providers []ipmi.Provider
	}{
		"goipmi":   {[]ipmi.Provider{ipmi.GoIPMI()}},
		"ipmitool": {[]ipmi.Provider{ipmi.IPMITool()}},
	}
	bmcs := startSims(t, len(tests), ipmisim.Options{})
	i := 0
	for name, tc := range tests {
		b := bmcs[i]
		i++
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := b.RefuseBoot(true); err != nil {
				t.Fatal(err)
			}
			c := &ipmi.Controller{Providers: tc.providers}
			res, err := c.SetBootDevice(context.Background(), creds(b), ipmi.BootPXE, ipmi.BootOptions{})
			if !errors.Is(err, ipmi.ErrRefused) {
				t.Fatalf("SetBootDevice = %+v, %v; want ErrRefused", res, err)
			}
			if dev, _ := b.Boot(); dev != "default" {
				t.Errorf("sim boot = %q, want unchanged default", dev)
			}
		})
	}
}

// TestBootIPMIToolNotVerified: ipmitool cannot read the override back; the
// result says so instead of claiming success.
func TestBootIPMIToolNotVerified(t *testing.T) {
	t.Parallel()
	b := startSims(t, 1, ipmisim.Options{})[0]
	c := &ipmi.Controller{Providers: []ipmi.Provider{ipmi.IPMITool()}}
	res, err := c.SetBootDevice(context.Background(), creds(b), ipmi.BootPXE, ipmi.BootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Provider != "ipmitool" || res.ReadBack != nil || len(res.Warnings) != 1 || res.Warnings[0].Code != ipmi.WarnNotVerified {
		t.Errorf("result = %+v, want ipmitool, no read-back, WarnNotVerified", res)
	}
	if dev, _ := b.Boot(); dev != "pxe" {
		t.Errorf("sim boot = %q, want pxe", dev)
	}
}
