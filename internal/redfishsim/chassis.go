package redfishsim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Chassis is the machine a BMC powers. Calls come one at a time.
type Chassis interface {
	// Power reports whether the machine is on.
	Power() (bool, error)
	// SetPower turns the machine on or off.
	SetPower(on bool) error
	// Reset restarts a running machine; its power stays on.
	Reset() error
}

// DirChassis keeps the power in files, as the lab's ipmi_sim chassis
// script does, so the lab's supervisor starts and stops the machine's QEMU
// the same way for both kinds of BMC: DIR/power holds 0 or 1, and every
// change appends "on", "off" or "reset" to DIR/requests.
type DirChassis struct {
	Dir string
}

func (d DirChassis) Power() (bool, error) {
	b, err := os.ReadFile(filepath.Join(d.Dir, "power"))
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

func (d DirChassis) SetPower(on bool) error {
	was, err := d.Power()
	if err != nil {
		return err
	}
	v, req := "0", "off"
	if on {
		v, req = "1", "on"
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "power"), []byte(v+"\n"), 0o644); err != nil {
		return err
	}
	if was == on {
		return nil
	}
	return d.request(req)
}

func (d DirChassis) Reset() error { return d.request("reset") }

func (d DirChassis) request(r string) error {
	f, err := os.OpenFile(filepath.Join(d.Dir, "requests"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// MemChassis is a machine in memory that records what it was asked:
// "on", "off", "reset". The zero value is off.
type MemChassis struct {
	mu    sync.Mutex
	on    bool
	calls []string
}

// NewMemChassis is a chassis that starts on or off.
func NewMemChassis(on bool) *MemChassis { return &MemChassis{on: on} }

func (m *MemChassis) Power() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}

func (m *MemChassis) SetPower(on bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if on != m.on {
		m.calls = append(m.calls, map[bool]string{true: "on", false: "off"}[on])
	}
	m.on = on
	return nil
}

func (m *MemChassis) Reset() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "reset")
	return nil
}

// Calls are the changes made so far, oldest first.
func (m *MemChassis) Calls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}
