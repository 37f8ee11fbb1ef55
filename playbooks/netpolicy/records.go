package netpolicy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Record is a machine's last apply, kept in Consul KV at
// PREFIX/fw/applied/ID.
type Record struct {
	Version     string     `json:"version"`
	AppliedAt   time.Time  `json:"applied_at"`
	By          string     `json:"by,omitempty"`
	Confirmed   bool       `json:"confirmed"`
	ConfirmedAt *time.Time `json:"confirmed_at,omitempty"`
}

// Records stores Records in Consul KV.
type Records struct {
	Client *api.Client
	// Prefix is the inventory's KV prefix. If "", "ironrack".
	Prefix string
	// Who is recorded as By.
	Who string
}

func (r *Records) key(id string) string {
	p := strings.TrimSuffix(r.Prefix, "/")
	if p == "" {
		p = "ironrack"
	}
	return p + "/fw/applied/" + id
}

// Get returns id's record, nil if none.
func (r *Records) Get(ctx context.Context, id string) (*Record, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, _, err := r.Client.KV().Get(r.key(id), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.key(id), err)
	}
	if kv == nil {
		return nil, nil
	}
	var rec Record
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return nil, fmt.Errorf("read %s: %w", r.key(id), err)
	}
	return &rec, nil
}

// Put writes id's record.
func (r *Records) Put(ctx context.Context, id string, rec Record) error {
	if rec.By == "" {
		rec.By = r.Who
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.Client.KV().Put(&api.KVPair{Key: r.key(id), Value: b}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("write %s: %w", r.key(id), err)
	}
	return nil
}

// Update changes id's record with CAS, so a confirm never overwrites a
// newer apply's record with its own stale copy.
func (r *Records) Update(ctx context.Context, id string, fn func(*Record)) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for range 8 {
		kv, _, err := r.Client.KV().Get(r.key(id), (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("read %s: %w", r.key(id), err)
		}
		var rec Record
		var idx uint64
		if kv != nil {
			if err := json.Unmarshal(kv.Value, &rec); err != nil {
				return fmt.Errorf("read %s: %w", r.key(id), err)
			}
			idx = kv.ModifyIndex
		}
		fn(&rec)
		b, _ := json.Marshal(rec)
		ok, _, err := r.Client.KV().CAS(&api.KVPair{Key: r.key(id), Value: b, ModifyIndex: idx}, (&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("write %s: %w", r.key(id), err)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("write %s: lost the CAS race 8 times", r.key(id))
}

// Applied lists the machines that have a record: those the firewall was
// applied to.
func (r *Records) Applied(ctx context.Context) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	base := strings.TrimSuffix(r.key("x"), "x")
	keys, _, err := r.Client.KV().Keys(base, "", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", base, err)
	}
	out := map[string]bool{}
	for _, k := range keys {
		out[strings.TrimPrefix(k, base)] = true
	}
	return out, nil
}
