package ipmisim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Power reports the chassis power as the chassis script stored it.
func (b *BMC) Power() (bool, error) {
	s, err := b.read("power")
	if err != nil {
		return false, err
	}
	return s == "1", nil
}

// SetPower seeds the chassis power directly (no IPMI, no hook).
func (b *BMC) SetPower(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	return os.WriteFile(filepath.Join(b.Dir, "power"), []byte(v+"\n"), 0o644)
}

// Boot reports the boot device as the chassis script stored it, in
// ipmi_sim's words: "default" (disk or no override), "pxe", "cdrom", "bios".
func (b *BMC) Boot() (string, error) { return b.read("boot") }

// Calls returns the chassis script's call log, one "get power boot" or
// "set power 1" per line.
func (b *BMC) Calls() ([]string, error) {
	s, err := b.read("ctl.log")
	if err != nil || s == "" {
		return nil, err
	}
	return strings.Split(s, "\n"), nil
}

// Sets returns only the "set ..." lines of the call log.
func (b *BMC) Sets() ([]string, error) {
	calls, err := b.Calls()
	var sets []string
	for _, c := range calls {
		if strings.HasPrefix(c, "set ") {
			sets = append(sets, c)
		}
	}
	return sets, err
}

// ClearCalls empties the call log.
func (b *BMC) ClearCalls() error {
	return os.WriteFile(filepath.Join(b.Dir, "ctl.log"), nil, 0o644)
}

// RefuseBoot makes the chassis script fail every boot device set (true) or
// accept them again (false).
func (b *BMC) RefuseBoot(refuse bool) error {
	p := filepath.Join(b.Dir, "refuse-boot")
	if !refuse {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	return os.WriteFile(p, nil, 0o644)
}

func (b *BMC) read(name string) (string, error) {
	data, err := os.ReadFile(filepath.Join(b.Dir, name))
	if err != nil {
		return "", fmt.Errorf("sim %s: %w", b.Addr, err)
	}
	return strings.TrimSpace(string(data)), nil
}
