// Package capacity is the capacity planner: from a workload (events per
// second, retention, bytes per event, queries per second, headroom) and a
// capacity model, it computes each tier's size, picks the hardware class
// that serves it, and checks the step against the machines ready in the
// inventory's pool, refusing a plan the pool cannot meet and naming the
// shortfall per class.
//
// The model lists hardware classes, each a where-expression of the
// inventory's where-language with what one machine of the class does per
// tier: ingestion events/s, storage bytes, query QPS (0: the class does not
// serve that tier), plus the storage replication factor. Two models are
// embedded: the default (default-model.json) and one for the virtual lab's
// VMs (lab-model.json, NamedModel "lab"). Planning is pure (Model.Plan); ReadPool
// reads the ready pool through a narrow lister that *inventory.Store
// satisfies.
package capacity

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/ironrack/ironrack/inventory"
)

// The tiers, in planning order.
const (
	Ingestion = "ingestion"
	Storage   = "storage"
	Query     = "query"
)

// Tiers are the tiers the planner sizes, in the order it plans them (an
// earlier tier gets first pick of a shared class's ready machines).
var Tiers = []string{Ingestion, Storage, Query}

// Class is one hardware class of the model.
type Class struct {
	// Name is how plans and errors name the class.
	Name string `json:"name"`
	// Where selects the class's machines (inventory where-language).
	Where string `json:"where"`
	// RootDisk is the class's root-device hint (inventory.ParseDiskWhere):
	// which disk of its machines takes the OS. Empty: the first that fits.
	// The plan hands it to the tier (stack config <tier>RootDisk).
	RootDisk string `json:"root_disk,omitempty"`
	// RootLayout is the class's root layout (inventory.ValidateLayout):
	// "flat" or empty (one disk) or "mirror" (RAID 1 over the two disks
	// RootDisk matches, which it then needs). The plan hands it to the
	// tier (stack config <tier>RootLayout).
	RootLayout string `json:"root_layout,omitempty"`
	// IngestionEventsPerSec is what one machine ingests; 0: not an
	// ingestion class.
	IngestionEventsPerSec float64 `json:"ingestion_events_per_sec"`
	// StorageBytes is what one machine stores (usable bytes); 0: not a
	// storage class.
	StorageBytes float64 `json:"storage_bytes"`
	// QueryQPS is what one machine answers; 0: not a query class.
	QueryQPS float64 `json:"query_qps"`

	where *inventory.Where
}

// PerNode is what one machine of the class does for a tier (0: nothing).
func (c *Class) PerNode(tier string) float64 {
	switch tier {
	case Ingestion:
		return c.IngestionEventsPerSec
	case Storage:
		return c.StorageBytes
	case Query:
		return c.QueryQPS
	}
	return 0
}

// Selector is the class's compiled where-expression.
func (c *Class) Selector() *inventory.Where { return c.where }

// Model is a capacity model.
type Model struct {
	// ReplicationFactor is how many copies of each stored byte the storage
	// tier keeps, on as many racks.
	ReplicationFactor int `json:"replication_factor"`
	// Classes in order of preference: a tier takes the first class that
	// serves it and that the ready pool can meet.
	Classes []*Class `json:"classes"`
}

//go:embed default-model.json
var defaultModel []byte

//go:embed lab-model.json
var labModel []byte

// DefaultModel returns the model shipped with ironrack
// (tiers/capacity/default-model.json, embedded; a test keeps it valid).
func DefaultModel() (*Model, error) {
	return ParseModel("default-model.json (embedded)", bytes.NewReader(defaultModel))
}

// Models are the names of the embedded models, in the order listed.
var Models = []string{"default", "lab"}

// NamedModel returns an embedded model by name: "default" (the
// datacenter's classes, 64 GB and more, replication factor 3) or "lab"
// (tiers/capacity/lab-model.json: the virtual rack's small VMs, 1-2 GB of
// memory, 1-2 CPUs, 1-2 small disks, replication factor 2, so a lab of 5
// machines on 2 racks holds the three tiers). ok is false for another name.
func NamedModel(name string) (m *Model, ok bool, err error) {
	switch name {
	case "default":
		m, err = DefaultModel()
	case "lab":
		m, err = ParseModel("lab-model.json (embedded)", bytes.NewReader(labModel))
	default:
		return nil, false, nil
	}
	return m, true, err
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ParseModel reads a model (JSON) and checks it. Errors name the file and
// the class. Unknown keys are errors, so a misspelled capacity is not
// silently zero.
func ParseModel(name string, r io.Reader) (*Model, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var m Model
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("model %s: trailing data after the JSON object", name)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	return &m, nil
}

func (m *Model) check() error {
	if m.ReplicationFactor < 1 || m.ReplicationFactor > 16 {
		return fmt.Errorf("replication_factor %d: want 1..16", m.ReplicationFactor)
	}
	if len(m.Classes) == 0 {
		return errors.New("no classes")
	}
	seen := map[string]bool{}
	var errs []error
	for i, c := range m.Classes {
		if c == nil {
			errs = append(errs, fmt.Errorf("classes[%d]: null", i))
			continue
		}
		what := fmt.Sprintf("classes[%d] (%s)", i, c.Name)
		if !nameRE.MatchString(c.Name) {
			errs = append(errs, fmt.Errorf("%s: name: want letters, digits, _ . -", what))
		} else if seen[c.Name] {
			errs = append(errs, fmt.Errorf("%s: name used twice", what))
		}
		seen[c.Name] = true
		if strings.TrimSpace(c.Where) == "" {
			errs = append(errs, fmt.Errorf("%s: where: empty (a class must select its machines)", what))
		} else if w, err := inventory.ParseWhere(c.Where); err != nil {
			errs = append(errs, fmt.Errorf("%s: where: %w", what, err))
		} else {
			c.where = w
		}
		if c.RootDisk != "" {
			if _, err := inventory.ParseDiskWhere(c.RootDisk); err != nil {
				errs = append(errs, fmt.Errorf("%s: root_disk: %w", what, err))
			}
		}
		if err := inventory.ValidateLayout(c.RootLayout, c.RootDisk); err != nil {
			errs = append(errs, fmt.Errorf("%s: root_layout: %w", what, err))
		}
		for _, f := range []struct {
			key string
			v   float64
		}{{"ingestion_events_per_sec", c.IngestionEventsPerSec}, {"storage_bytes", c.StorageBytes}, {"query_qps", c.QueryQPS}} {
			if f.v < 0 || f.v > 1e18 {
				errs = append(errs, fmt.Errorf("%s: %s %g: want 0..1e18", what, f.key, f.v))
			}
		}
		if c.IngestionEventsPerSec == 0 && c.StorageBytes == 0 && c.QueryQPS == 0 {
			errs = append(errs, fmt.Errorf("%s: serves no tier (every capacity is 0)", what))
		}
	}
	for _, t := range Tiers {
		if len(m.candidates(t)) == 0 {
			errs = append(errs, fmt.Errorf("no class serves the %s tier", t))
		}
	}
	return errors.Join(errs...)
}

// candidates are the classes that serve a tier, in preference order.
func (m *Model) candidates(tier string) []*Class {
	var out []*Class
	for _, c := range m.Classes {
		if c != nil && c.PerNode(tier) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// Class returns the class of that name, or nil.
func (m *Model) Class(name string) *Class {
	for _, c := range m.Classes {
		if c.Name == name {
			return c
		}
	}
	return nil
}
