package ipmi

import (
	"context"
	"errors"
	"fmt"

	"github.com/bmc-toolbox/bmclib/v2/bmc"
)

// infoReader and fruReader are what a driver needs for Info and FRU beyond
// bmclib's interfaces (goipmi has both).
type infoReader interface {
	info(ctx context.Context) (Info, error)
}

type fruReader interface {
	fru(ctx context.Context) (FRU, error)
}

// Info identifies the BMC (IPMI Get Device ID, or Redfish inventory) and,
// where the BMC has a FRU, adds its serial number.
func (c *Controller) Info(ctx context.Context, cred Credentials) (Info, error) {
	var out Info
	need := func(d any) bool {
		_, a := d.(infoReader)
		_, b := d.(bmc.InventoryGetter)
		return a || b
	}
	prov, err := c.with(ctx, cred, need, func(ctx context.Context, s *session) error {
		if r, ok := s.driver.(infoReader); ok {
			info, err := r.info(ctx)
			if err != nil {
				return err
			}
			if f, ok := s.driver.(fruReader); ok {
				fru, err := f.fru(ctx)
				switch {
				case err == nil:
					info.Serial = fru.Serial()
				case !errors.Is(err, ErrUnsupported):
					return err
				}
			}
			out = info
			return nil
		}
		dev, err := s.client.Inventory(ctx)
		if err != nil {
			return providerError(err)
		}
		out = Info{Manufacturer: dev.Vendor, Product: dev.Model, Serial: dev.Serial}
		if dev.BMC != nil && dev.BMC.Firmware != nil {
			out.Firmware = dev.BMC.Firmware.Installed
		}
		return nil
	})
	if err != nil {
		return Info{}, fmt.Errorf("bmc info %s: %w", cred.Host, err)
	}
	out.Provider = prov
	return out, nil
}

// FRU reads the BMC's built-in FRU (device 0). A BMC without one gives
// ErrUnsupported.
func (c *Controller) FRU(ctx context.Context, cred Credentials) (FRU, error) {
	var out FRU
	need := func(d any) bool { _, ok := d.(fruReader); return ok }
	_, err := c.with(ctx, cred, need, func(ctx context.Context, s *session) error {
		var err error
		out, err = s.driver.(fruReader).fru(ctx)
		return err
	})
	if err != nil {
		return FRU{}, fmt.Errorf("read FRU %s: %w", cred.Host, err)
	}
	return out, nil
}
