package inventory

// Batched lease commits and reservation lookups for the DHCP server's
// group commit; the single-lease StoreLease is in boot.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// MaxLeaseBatch is the most leases StoreLeases writes in one transaction.
const MaxLeaseBatch = 64

// StoreLeases stores several leases durably, as StoreLease does for one,
// but in as few Consul round trips as it can: one read-only transaction
// finds which MACs belong to machines (none when every lease is NoMachine
// and Unclaimed: see Lease), one transaction writes every lease
// whose machine needs no change, and a machine whose ip changes is updated
// (lease and ip together) in its own transaction, as StoreLease does. The
// boot server uses it to group-commit the leases of concurrent requests.
//
// errs[i] is the result for ls[i]; a lease is durable when its error is
// nil. Every lease takes its address's key (addrs/<ip>) with a CAS, as
// StoreLease does: an address another MAC's live lease holds is
// ErrAddressInUse for that lease alone. len(ls) must be at most MaxLeaseBatch.
func (s *Store) StoreLeases(ctx context.Context, ls []Lease) (errs []error) {
	return s.storeLeases(ctx, ls, false)
}

// StoreLeases6 is StoreLeases for DHCPv6 leases (leases6/<mac>, as
// StoreLease6 writes one): a machine's ip changes only when it has none or
// an IPv6 one.
func (s *Store) StoreLeases6(ctx context.Context, ls []Lease) (errs []error) {
	return s.storeLeases(ctx, ls, true)
}

func (s *Store) storeLeases(ctx context.Context, ls []Lease, v6 bool) (errs []error) {
	errs = make([]error, len(ls))
	if len(ls) > MaxLeaseBatch {
		for i := range errs {
			errs[i] = fmt.Errorf("store leases: batch of %d exceeds %d", len(ls), MaxLeaseBatch)
		}
		return errs
	}
	vals := make([][]byte, len(ls))
	var reads api.TxnOps
	var readIdx, asked []int // valid leases; those whose MAC index is read
	for i := range ls {
		mac, err := NormalizeMAC(ls[i].MAC)
		if err != nil {
			errs[i] = fmt.Errorf("store lease: %w", err)
			continue
		}
		ls[i].MAC = mac
		if ip := net.ParseIP(ls[i].IP); ip == nil || v6 && ip.To4() != nil {
			errs[i] = fmt.Errorf("store lease for %s: malformed IP %q", mac, ls[i].IP)
			continue
		}
		vals[i], _ = json.Marshal(ls[i])
		readIdx = append(readIdx, i)
		if !ls[i].NoMachine {
			reads = append(reads, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: s.key("index", "mac", mac)}})
			asked = append(asked, i)
		}
	}
	if len(readIdx) == 0 {
		return errs
	}
	fail := func(idx []int, err error) {
		for _, i := range idx {
			errs[i] = err
		}
	}
	owner := map[int]string{}
	holder := map[int]addrHolder{}
	// Every lease needs no MAC index read and claims a fresh address: no
	// read at all, each claim a create-only CAS (index 0, as for an absent
	// key). A conflict stores the batch again with the read (below).
	blind := len(asked) == 0
	for _, i := range readIdx {
		blind = blind && ls[i].Unclaimed
	}
	if !blind {
		// The addresses' holders, in the same read.
		if !s.noAddrClaim {
			for _, i := range readIdx {
				reads = append(reads, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: s.addrKey(ls[i].IP)}})
			}
		}
		resp := &api.TxnResponse{}
		if len(reads) > 0 {
			var err error
			if resp, err = s.txn(ctx, reads); err != nil {
				fail(readIdx, fmt.Errorf("store leases: read MAC index: %w", err))
				return errs
			}
		}
		for j, r := range resp.Results {
			switch {
			case j < len(asked):
				if r.KV != nil && len(r.KV.Value) > 0 {
					owner[asked[j]] = string(r.KV.Value)
				}
			case j-len(asked) < len(readIdx):
				if r.KV != nil && r.KV.ModifyIndex != 0 {
					holder[readIdx[j-len(asked)]] = addrHolder{mac: string(r.KV.Value), index: r.KV.ModifyIndex}
				}
			}
		}
	}
	// Addresses another MAC holds: that MAC's lease says whether it is live.
	var lreads api.TxnOps
	var lfor []int
	for _, i := range readIdx {
		if h, ok := holder[i]; ok && h.mac != ls[i].MAC {
			lreads = append(lreads, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: s.leaseKeyFor(h.mac, ls[i].IP)}})
			lfor = append(lfor, i)
		}
	}
	heldLease := map[int]*Lease{}
	if len(lreads) > 0 {
		resp, err := s.txn(ctx, lreads)
		if err != nil {
			fail(readIdx, fmt.Errorf("store leases: read holders' leases: %w", err))
			return errs
		}
		for j, r := range resp.Results {
			if j < len(lfor) && r.KV != nil && len(r.KV.Value) > 0 {
				var l Lease
				if json.Unmarshal(r.KV.Value, &l) == nil {
					heldLease[lfor[j]] = &l
				}
			}
		}
	}
	now := s.cfg.Now()
	claims := map[int]*api.TxnOp{}
	taken := map[string]bool{} // addresses claimed in this batch
	var live []int
	for _, i := range readIdx {
		if s.noAddrClaim {
			live = append(live, i)
			continue
		}
		c, err := s.addrClaim(ls[i].IP, ls[i].MAC, holder[i], heldLease[i], now)
		if err == nil && taken[ls[i].IP] {
			err = fmt.Errorf("address %s is asked for twice in one batch: %w", ls[i].IP, ErrAddressInUse)
		}
		if err != nil {
			errs[i] = fmt.Errorf("store lease for %s: %w", ls[i].MAC, err)
			continue
		}
		taken[ls[i].IP] = true
		claims[i] = c
		live = append(live, i)
	}
	readIdx = live
	// The owners' records, in one batched read, to see whose ip changes.
	var ownerIDs []string
	for _, id := range owner {
		ownerIDs = append(ownerIDs, id)
	}
	recs, err := s.records(ctx, ownerIDs)
	if err != nil {
		fail(readIdx, fmt.Errorf("store leases: read machines: %w", err))
		return errs
	}
	ipOf := make(map[string]string, len(recs))
	for _, r := range recs {
		ipOf[r.rec.ID] = r.rec.IP
	}
	var writes api.TxnOps
	var writeIdx, machineIdx []int
	for _, i := range readIdx {
		if id := owner[i]; id != "" {
			if ip, ok := ipOf[id]; ok && ip != ls[i].IP && (!v6 || ip == "" || strings.Contains(ip, ":")) {
				machineIdx = append(machineIdx, i)
				continue
			}
		}
		writes = append(writes, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.leaseKeyFor(ls[i].MAC, ls[i].IP), Value: vals[i]}})
		if c := claims[i]; c != nil {
			writes = append(writes, c)
		}
		writeIdx = append(writeIdx, i)
	}
	if len(writes) > 0 {
		err := s.writeTxn(ctx, writes)
		if errors.Is(err, ErrConflict) && blind {
			// An address key existed after all: the batch again, reading
			// the keys (nothing of this attempt was written).
			again := slices.Clone(ls)
			for i := range again {
				again[i].Unclaimed = false
			}
			return s.storeLeases(ctx, again, v6)
		}
		if errors.Is(err, ErrConflict) {
			// An address key moved since the read (another boot server):
			// each lease alone, so only the loser fails.
			for _, i := range writeIdx {
				errs[i] = s.storeLease(ctx, ls[i], v6)
			}
		} else if err != nil {
			fail(writeIdx, fmt.Errorf("store leases: %w", err))
		}
	}
	for _, i := range machineIdx {
		errs[i] = s.storeLease(ctx, ls[i], v6)
	}
	return errs
}

// Reservation is what the inventory says of one MAC: the machine that has
// it, and the ip recorded on that machine (may be empty).
type Reservation struct {
	Machine string
	IP      string
}

// Reservations returns, for each MAC that belongs to a machine, the machine
// and its recorded ip; MACs of no machine are absent. It reads in at most
// two read-only transactions (answered without a Raft round), however many
// MACs are asked, up to MaxLeaseBatch. The boot server uses it to look up
// the reservations of concurrent DHCP requests at once.
func (s *Store) Reservations(ctx context.Context, macs []string) (map[string]Reservation, error) {
	if len(macs) > MaxLeaseBatch {
		return nil, fmt.Errorf("reservations: %d MACs exceed %d", len(macs), MaxLeaseBatch)
	}
	var reads api.TxnOps
	var norm []string
	for _, raw := range macs {
		mac, err := NormalizeMAC(raw)
		if err != nil {
			continue
		}
		norm = append(norm, mac)
		reads = append(reads, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: s.key("index", "mac", mac)}})
	}
	out := map[string]Reservation{}
	if len(reads) == 0 {
		return out, nil
	}
	resp, err := s.txn(ctx, reads)
	if err != nil {
		return nil, fmt.Errorf("reservations: read MAC index: %w", err)
	}
	var gets api.TxnOps
	var owners []string
	for j, r := range resp.Results {
		if j < len(norm) && r.KV != nil && len(r.KV.Value) > 0 {
			gets = append(gets, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: s.machineKey(string(r.KV.Value))}})
			owners = append(owners, norm[j])
			out[norm[j]] = Reservation{Machine: string(r.KV.Value)}
		}
	}
	if len(gets) == 0 {
		return out, nil
	}
	resp, err = s.txn(ctx, gets)
	if err != nil {
		return nil, fmt.Errorf("reservations: read machines: %w", err)
	}
	for j, r := range resp.Results {
		if j >= len(owners) || r.KV == nil || len(r.KV.Value) == 0 {
			continue
		}
		rec, err := decodeRecord(r.KV.Value)
		if err != nil {
			return nil, fmt.Errorf("reservations: %s: %w", r.KV.Key, err)
		}
		out[owners[j]] = Reservation{Machine: rec.ID, IP: rec.IP}
	}
	return out, nil
}

// MACs lists every MAC that belongs to a machine (the MAC index), as a
// blocking query: with waitIndex > 0 it returns once the index has changed
// past waitIndex, or after wait. It returns the index to wait on next. The
// boot server keeps its replica of the index with it, so a DHCP request
// from a MAC no machine has costs no read.
func (s *Store) MACs(ctx context.Context, waitIndex uint64, wait time.Duration) ([]string, uint64, error) {
	prefix := s.key("index", "mac") + "/"
	// Consul answers a blocking query within wait plus up to wait/16 of
	// jitter; past that (and the usual op timeout) the connection is dead.
	ctx, cancel := context.WithTimeout(ctx, wait+wait/16+s.cfg.OpTimeout)
	defer cancel()
	keys, meta, err := s.c.KV().Keys(prefix, "", (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: wait}).WithContext(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("read MAC index: %w", err)
	}
	macs := make([]string, 0, len(keys))
	for _, k := range keys {
		macs = append(macs, strings.TrimPrefix(k, prefix))
	}
	return macs, meta.LastIndex, nil
}
