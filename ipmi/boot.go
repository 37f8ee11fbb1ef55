package ipmi

import (
	"context"
	"fmt"
	"time"

	"github.com/bmc-toolbox/bmclib/v2/bmc"
)

// bootFlagsReader is what a driver needs to read the boot flags with IPMI's
// valid bit (goipmi has it; bmclib's BootDeviceOverride has no such field).
type bootFlagsReader interface {
	bootFlags(ctx context.Context) (BootOverride, error)
}

// SetBootDevice sets the boot override and reads it back:
//   - a set the BMC refuses is ErrRefused;
//   - a device that reads back different is ErrNotApplied (ipmitool exits 0
//     when the BMC refuses a set; the read-back catches it);
//   - persistent, EFI or the valid bit dropped by the BMC (ipmi_sim drops
//     all three) are Warnings in the result, not silence;
//   - a provider that cannot read back gives WarnNotVerified.
func (c *Controller) SetBootDevice(ctx context.Context, cred Credentials, dev BootDevice, opts BootOptions) (BootResult, error) {
	start := c.clock().Now()
	var res BootResult
	need := func(d any) bool { _, ok := d.(bmc.BootDeviceSetter); return ok }
	prov, err := c.with(ctx, cred, need, func(ctx context.Context, s *session) error {
		res = BootResult{Device: dev, Requested: opts, Provider: s.provider}
		ok, err := s.client.SetBootDevice(ctx, string(dev), opts.Persistent, opts.EFI)
		if err != nil {
			return providerError(err)
		}
		if !ok {
			return fmt.Errorf("%s: boot device %s not acknowledged: %w", s.provider, dev, ErrRefused)
		}
		got, verified, err := c.readBackBoot(ctx, s, dev)
		if err != nil {
			return err
		}
		if !verified {
			res.Warnings = append(res.Warnings, Warning{Code: WarnNotVerified,
				Message: s.provider + " cannot read the boot device back"})
			return nil
		}
		if s.protocol == ProtocolRedfish {
			if got, err = c.settleBoot(ctx, s, got); err != nil {
				return err
			}
		}
		res.ReadBack = &got
		res.Warnings = append(res.Warnings, bootWarnings(opts, got)...)
		return nil
	})
	res.Elapsed = c.clock().Now().Sub(start)
	if err != nil {
		return res, fmt.Errorf("set boot device %s %s: %w", dev, cred.Host, err)
	}
	res.Provider = prov
	return res, nil
}

// readBackBoot reads the override until the device matches want (some BMCs
// apply it a moment later), for at most 2 s. verified is false if the
// provider cannot read it at all.
func (c *Controller) readBackBoot(ctx context.Context, s *session, want BootDevice) (got BootOverride, verified bool, err error) {
	clk := c.clock()
	start := clk.Now()
	for {
		got, verified, err = s.bootOverride(ctx)
		if err != nil || !verified {
			return got, verified, err
		}
		if got.Device == want {
			return got, true, nil
		}
		if clk.Now().Sub(start) >= 2*time.Second || sleep(ctx, clk, c.pollInterval()) != nil {
			return got, true, fmt.Errorf("boot device reads back %s, want %s: %w", got.Device, want, ErrNotApplied)
		}
	}
}

// settleBoot reads a Redfish override again BootSettle after it first read
// back as set. A Redfish override has no valid bit, and some BMCs accept
// it, show it, and then put the old one back (bmclib#459): that is
// ErrReverted, not success.
func (c *Controller) settleBoot(ctx context.Context, s *session, set BootOverride) (BootOverride, error) {
	if err := sleep(ctx, c.clock(), c.bootSettle()); err != nil {
		return set, fmt.Errorf("boot device read back as %s; the deadline came before it could be read again: %w", set.Device, ErrTimeout)
	}
	got, _, err := s.bootOverride(ctx)
	if err != nil {
		return set, fmt.Errorf("boot device read back as %s, then reading it again failed: %w", set.Device, err)
	}
	if got.Device != set.Device || got.Persistent != set.Persistent || got.EFI != set.EFI {
		return got, fmt.Errorf("boot override read back as %s, then %v later as %s: %w",
			describe(set), c.bootSettle(), describe(got), ErrReverted)
	}
	return got, nil
}

func describe(o BootOverride) string {
	mode, kind := "legacy", "once"
	if o.EFI {
		mode = "efi"
	}
	if o.Persistent {
		kind = "persistent"
	}
	return fmt.Sprintf("%s (%s, %s)", o.Device, kind, mode)
}

// bootWarnings compares what was asked with what reads back.
func bootWarnings(asked BootOptions, got BootOverride) []Warning {
	var w []Warning
	if asked.Persistent && !got.Persistent {
		w = append(w, Warning{WarnPersistentDropped, "persistent was requested; the BMC reads back a one-time override"})
	}
	if asked.EFI && !got.EFI {
		w = append(w, Warning{WarnEFIDropped, "EFI boot was requested; the BMC reads back legacy boot"})
	}
	if !got.Valid {
		w = append(w, Warning{WarnNotValid, "the BMC reads back the boot flags as not valid; firmware may ignore the override"})
	}
	return w
}

// BootDevice reads the boot override.
func (c *Controller) BootDevice(ctx context.Context, cred Credentials) (BootOverride, error) {
	var got BootOverride
	need := func(d any) bool {
		_, a := d.(bootFlagsReader)
		_, b := d.(bmc.BootDeviceOverrideGetter)
		return a || b
	}
	_, err := c.with(ctx, cred, need, func(ctx context.Context, s *session) error {
		var err error
		got, _, err = s.bootOverride(ctx)
		return err
	})
	if err != nil {
		return BootOverride{}, fmt.Errorf("boot device %s: %w", cred.Host, err)
	}
	return got, nil
}

func (s *session) bootOverride(ctx context.Context) (BootOverride, bool, error) {
	if r, ok := s.driver.(bootFlagsReader); ok {
		o, err := r.bootFlags(ctx)
		return o, err == nil, err
	}
	if _, ok := s.driver.(bmc.BootDeviceOverrideGetter); !ok {
		return BootOverride{}, false, nil
	}
	o, err := s.client.GetBootDeviceOverride(ctx)
	if err != nil {
		return BootOverride{}, false, providerError(err)
	}
	dev := BootDevice(o.Device)
	if o.Device == bmc.BootDeviceTypeNone || o.Device == "" {
		dev = BootNone
	}
	return BootOverride{Device: dev, Persistent: o.IsPersistent, EFI: o.IsEFIBoot, Valid: true}, true, nil
}
