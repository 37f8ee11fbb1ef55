package inventory

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// Sighting is what a boot or a discovery report tells about a machine.
type Sighting struct {
	// Serial is the DMI serial; empty when only the MAC is known (DHCP).
	Serial string
	// MACs seen; the first is the booting NIC.
	MACs []string
	// Source is recorded on a machine this creates, e.g. "pxe".
	Source string
}

// Enlist finds the machine a sighting belongs to — by serial first, then by
// MAC — and creates a `new` machine with no rack, slot or BMC when there is
// none. A serial or MAC learned from the sighting is added to the record. A
// sighting whose serial and MAC point at two different machines is
// ErrConflict. A later rack sheet fills in rack, slot and BMC by serial.
func (s *Store) Enlist(ctx context.Context, sg Sighting, change Change) (m *Machine, created bool, err error) {
	var macs []string
	for _, raw := range sg.MACs {
		mac, err := NormalizeMAC(raw)
		if err != nil {
			return nil, false, fmt.Errorf("enlist: %w", err)
		}
		macs = append(macs, mac)
	}
	if sg.Serial == "" && len(macs) == 0 {
		return nil, false, errors.New("enlist: need a serial or a MAC")
	}
	if change.What == "" {
		change.What = "enlist"
	}
	for attempt := 0; attempt < maxRetries; attempt++ {
		var bySerial, byMAC string
		if sg.Serial != "" {
			if bySerial, err = s.lookupIndex(ctx, s.key("index", "serial", url.PathEscape(sg.Serial))); err != nil {
				return nil, false, err
			}
		}
		for _, mac := range macs {
			id, err := s.lookupIndex(ctx, s.key("index", "mac", mac))
			if err != nil {
				return nil, false, err
			}
			if id != "" {
				byMAC = id
				break
			}
		}
		if bySerial != "" && byMAC != "" && bySerial != byMAC {
			// The serial wins: a machine known only by this MAC is the
			// serial's machine, seen by PXE before its sheet named the MAC.
			if _, err := s.absorb(ctx, byMAC, bySerial, sg.Serial, change); err != nil {
				return nil, false, fmt.Errorf("enlist: MAC %s: %w", macs[0], err)
			}
			byMAC = bySerial
		}
		id := bySerial
		if id == "" {
			id = byMAC
		}
		if id != "" {
			m, err := s.Update(ctx, id, System, change, func(m *Machine) error {
				if sg.Serial != "" {
					if m.Serial != "" && m.Serial != sg.Serial {
						return fmt.Errorf("MAC %s belongs to serial %s, sighting says %s: %w", byMAC, m.Serial, sg.Serial, ErrConflict)
					}
					m.Serial = sg.Serial
				}
				for _, mac := range macs {
					if !hasMAC(m, mac) {
						m.NICs = append(m.NICs, NIC{MAC: mac, Primary: len(m.NICs) == 0})
					}
				}
				return nil
			})
			return m, false, err
		}
		key := sg.Serial
		if key == "" {
			key = macs[0]
		}
		src := sg.Source
		if src == "" {
			src = "pxe"
		}
		nm := &Machine{ID: MachineID(key), Serial: sg.Serial, State: StateNew, Source: src}
		for i, mac := range macs {
			nm.NICs = append(nm.NICs, NIC{MAC: mac, Primary: i == 0})
		}
		nm.normalize()
		if errs := nm.Validate(); len(errs) > 0 {
			return nil, false, fmt.Errorf("enlist: %w", errors.Join(asErrors(errs)...))
		}
		w := &write{next: &record{Machine: *nm}, change: change}
		s.plan(w)
		err := s.commit(ctx, w)
		if err == nil {
			return &w.next.Machine, true, nil
		}
		if !errors.Is(err, ErrConflict) {
			return nil, false, err
		}
		// Someone enlisted it first: look again.
	}
	return nil, false, fmt.Errorf("enlist: gave up after %d races: %w", maxRetries, ErrConflict)
}

func hasMAC(m *Machine, mac string) bool {
	for _, n := range m.NICs {
		if n.MAC == mac {
			return true
		}
	}
	return false
}

// Tag sets (value non-empty) or removes (value empty) tags on a machine.
func (s *Store) Tag(ctx context.Context, id string, tags map[string]string, change Change) (*Machine, error) {
	if change.What == "" {
		change.What = "tag"
	}
	return s.Update(ctx, id, Operator, change, func(m *Machine) error {
		for k, v := range tags {
			if v == "" {
				delete(m.Tags, k)
			} else {
				m.Tags[k] = v
			}
		}
		return nil
	})
}

// absorb folds machine pid — enlisted by PXE, its serial unknown until now —
// into machine mid, which holds that serial (say, from a rack sheet that
// lacked the booting MAC): pid's NICs and ip move to mid and pid is deleted,
// in one transaction. Discovery merges by serial first, so the serial's
// machine is the one that stays. A pid that has a serial, a rack or a BMC of
// its own is a different machine: ErrConflict.
func (s *Store) absorb(ctx context.Context, pid, mid, serial string, change Change) (*Machine, error) {
	for attempt := 0; attempt < maxRetries; attempt++ {
		p, pidx, err := s.get(ctx, pid)
		if err != nil {
			return nil, err
		}
		m, midx, err := s.get(ctx, mid)
		if err != nil {
			return nil, err
		}
		if p.Serial != "" || p.Rack != "" || p.BMC.Address != "" {
			return nil, fmt.Errorf("serial %s is machine %s, but the reporting machine %s is a different one (serial %q, rack %q): %w", serial, mid, pid, p.Serial, p.Rack, ErrConflict)
		}
		next := &record{Machine: *m.Machine.Clone(), HistorySeq: m.HistorySeq}
		var moved []string
		for _, n := range p.NICs {
			if !hasMAC(&next.Machine, n.MAC) {
				next.NICs = append(next.NICs, NIC{MAC: n.MAC, Name: n.Name, Primary: len(next.NICs) == 0})
				moved = append(moved, n.MAC)
			}
		}
		if next.IP == "" {
			next.IP = p.IP
		}
		ch := change
		ch.What = "merge"
		ch.Why = fmt.Sprintf("machine %s, enlisted by PXE with MACs %v, reported serial %s: merged into this machine", pid, moved, serial)
		del := &write{prev: p, prevIndex: pidx}
		upd := &write{prev: m, prevIndex: midx, next: next, change: ch}
		s.plan(upd)
		dops, err := s.ops(del)
		if err != nil {
			return nil, err
		}
		uops, err := s.ops(upd)
		if err != nil {
			return nil, err
		}
		// The deletes of pid's MAC index keys come first, so mid's
		// "only if absent" creates of the same keys succeed.
		err = s.writeTxn(ctx, append(dops, uops...))
		if err == nil {
			s.log.Info("merged PXE-enlisted machine", "from", pid, "into", mid, "serial", serial)
			return &next.Machine, nil
		}
		var te *TxnError
		if !errors.As(err, &te) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("merge %s into %s: gave up after %d races: %w", pid, mid, maxRetries, ErrConflict)
}
