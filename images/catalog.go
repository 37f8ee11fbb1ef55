package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// ErrNotFound is returned for an image version the catalog does not hold.
var ErrNotFound = errors.New("image not found")

// Catalog is the image catalog in Consul KV: one key per image version,
// PREFIX/images/<name>/<version>, holding its Manifest as JSON. The files
// live in the boot server's data dir (DATA/images/<name>/<version>/); the
// catalog is what every boot server and the CLI agree exists.
type Catalog struct {
	// KV is Consul's KV API. Required.
	KV *api.KV
	// Prefix is the KV prefix of every ironrack key. If empty, "ironrack".
	Prefix string
	// Timeout bounds each Consul call. If 0, 10s.
	Timeout time.Duration
}

func (c *Catalog) root() string {
	p := strings.TrimSuffix(c.Prefix, "/")
	if p == "" {
		p = "ironrack"
	}
	return p + "/images/"
}

func (c *Catalog) key(name, version string) string {
	return c.root() + url.PathEscape(name) + "/" + url.PathEscape(version)
}

func (c *Catalog) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	d := c.Timeout
	if d == 0 {
		d = 10 * time.Second
	}
	return context.WithTimeout(ctx, d)
}

// Register records m. Registering the same version again replaces it
// (versions are content hashes, so it is the same image).
func (c *Catalog) Register(ctx context.Context, m Manifest) error {
	if m.Name == "" || m.Version == "" {
		return errors.New("register image: a manifest needs a name and a version")
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	if _, err := c.KV.Put(&api.KVPair{Key: c.key(m.Name, m.Version), Value: b}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("register image %s/%s: %w", m.Name, m.Version, err)
	}
	return nil
}

// Get returns one version's manifest, or ErrNotFound.
func (c *Catalog) Get(ctx context.Context, name, version string) (Manifest, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	p, _, err := c.KV.Get(c.key(name, version), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return Manifest{}, fmt.Errorf("image %s/%s: %w", name, version, err)
	}
	if p == nil {
		return Manifest{}, fmt.Errorf("image %s/%s: %w", name, version, ErrNotFound)
	}
	var m Manifest
	if err := json.Unmarshal(p.Value, &m); err != nil {
		return Manifest{}, fmt.Errorf("image %s/%s: stored manifest: %w", name, version, err)
	}
	return m, nil
}

// List returns every registered version, sorted by name then version. A
// record that does not decode is skipped and named in the error, with the
// rest still returned.
func (c *Catalog) List(ctx context.Context) ([]Manifest, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	pairs, _, err := c.KV.List(c.root(), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Manifest
	var errs []error
	for _, p := range pairs {
		var m Manifest
		if err := json.Unmarshal(p.Value, &m); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Key, err))
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out, errors.Join(errs...)
}

// Remove deletes one version's record, or returns ErrNotFound. Its files
// stay on the boot servers' disks.
func (c *Catalog) Remove(ctx context.Context, name, version string) error {
	if _, err := c.Get(ctx, name, version); err != nil {
		return err
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	if _, err := c.KV.Delete(c.key(name, version), (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("remove image %s/%s: %w", name, version, err)
	}
	return nil
}
