package ipmi_test

import (
	"context"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/ipmi"
)

func TestSmoke(t *testing.T) {
	b := startSims(t, 1, ipmisim.Options{FRU: &ipmisim.FRU{Manufacturer: "M", Product: "P", Serial: "S-%d", PartNumber: "X"}})[0]
	c := &ipmi.Controller{}
	ctx := context.Background()
	start := time.Now()
	st, err := c.PowerStatus(ctx, creds(b))
	t.Logf("status %v %v %v", st, err, time.Since(start))
	r, err := c.Power(ctx, creds(b), ipmi.On, ipmi.PowerOptions{})
	t.Logf("on %+v %v", r, err)
	r, err = c.Power(ctx, creds(b), ipmi.Cycle, ipmi.PowerOptions{AllowReboot: true})
	t.Logf("cycle %+v %v", r, err)
	br, err := c.SetBootDevice(ctx, creds(b), ipmi.BootPXE, ipmi.BootOptions{Persistent: true, EFI: true})
	t.Logf("boot %+v %+v %v", br, br.ReadBack, err)
	info, err := c.Info(ctx, creds(b))
	t.Logf("info %+v %v", info, err)
	bad := creds(b)
	bad.Password = "wrong"
	start = time.Now()
	_, err = c.PowerStatus(ctx, bad)
	t.Logf("wrong pw: %v in %v", err, time.Since(start))
	sets, _ := b.Calls()
	t.Logf("calls %q", sets)
}
