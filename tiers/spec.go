package tiers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ironrack/ironrack/inventory"
)

// Spec is what a tier should be.
type Spec struct {
	// Name is the tier recorded on its machines (ingestion, storage,
	// query, or any other).
	Name string
	// Size is how many machines the tier has.
	Size int
	// Selector is a where-expression that machines claimed for the tier
	// must match; empty: any ready machine.
	Selector string
	// Spread "rack" spreads the machines evenly over racks; "" does not.
	Spread string
	// Image is the OS image the deployer writes.
	Image string
	// UserData is handed to the deployed OS.
	UserData string
	// RootDisk is the root-device hint each new machine is deployed with
	// (inventory.ParseDiskWhere); empty: the agent's first fit.
	RootDisk string
	// RootLayout is how each new machine's root is laid out over the disks
	// RootDisk chooses: inventory.LayoutFlat (or empty) writes the image to
	// one disk; inventory.LayoutMirror builds a software RAID 1 over two
	// and needs RootDisk to match two.
	RootLayout string
	// Services are the Consul services each machine serves; Apply waits
	// until their health checks pass on every machine.
	Services []inventory.DeployService
	// Drain is how long a removed machine is left to finish in-flight work
	// after it leaves its services, before it is released.
	Drain time.Duration
	// Shards, if set, makes the tier sharded: every step keeps its
	// rack-aware shard → machine map in Consul (see Reconciler.Shards).
	Shards *Shards
	// Pick, if set, are exactly the machines a step up adds (a joint plan
	// of a stack's tiers: Reconciler.PlanStack), instead of the tier's own
	// choice. Machines the owner already holds are skipped (a re-run after
	// an interruption). If the rest are not the number the step needs, or
	// one is no longer ready and matching, Plan and Apply fail, naming
	// them, and nothing is claimed: the pool changed since the plan.
	Pick []string
}

// FieldError is one bad input, named as the Pulumi input is.
type FieldError struct {
	Field, Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

var tierNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// MaxSize bounds a tier's size (a typo guard: 10,000 is the inventory's
// design scale).
const MaxSize = 10000

// Validate names every bad input. The where-expression is compiled, so an
// unknown field or a syntax error is reported here, before anything runs.
func (s Spec) Validate() []*FieldError {
	var errs []*FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if !tierNameRE.MatchString(s.Name) {
		bad("name", "%q is not a tier name (lower-case letters, digits and -, starting with a letter, at most 63)", s.Name)
	}
	if s.Size < 0 || s.Size > MaxSize {
		bad("size", "%d is out of range (0 to %d)", s.Size, MaxSize)
	}
	if _, err := inventory.ParseWhere(s.Selector); err != nil {
		bad("selector", "%v", err)
	}
	if s.Spread != "" && s.Spread != "rack" {
		bad("spread", "%q is not a spread (want \"rack\" or nothing)", s.Spread)
	}
	if s.Drain < 0 {
		bad("drainSeconds", "%v is negative", s.Drain)
	}
	if s.RootDisk != "" {
		if _, err := inventory.ParseDiskWhere(s.RootDisk); err != nil {
			bad("rootDisk", "%v", err)
		}
	}
	if err := inventory.ValidateLayout(s.RootLayout, s.RootDisk); err != nil {
		bad("rootLayout", "%v", err)
	}
	errs = append(errs, s.validateShards()...)
	seen := map[string]bool{}
	for i, id := range s.Pick {
		switch {
		case id == "":
			bad(fmt.Sprintf("pick[%d]", i), "empty machine ID")
		case seen[id]:
			bad(fmt.Sprintf("pick[%d]", i), "machine %s is named twice", id)
		}
		seen[id] = true
	}
	for _, e := range inventory.ValidateServices(s.Services) {
		bad(e.Field, "%s", e.Problem)
	}
	return errs
}

// where compiles the selector (already validated).
func (s Spec) where() (*inventory.Where, error) {
	w, err := inventory.ParseWhere(s.Selector)
	if err != nil {
		return nil, fmt.Errorf("tier %s: selector: %w", s.Name, err)
	}
	return w, nil
}

// Owner is the inventory owner that tags a tier's claims: the resource's
// URN (it names the stack, the project and the resource), or, when the URN
// does not fit an owner (too long, or characters owners do not allow), its
// tier name and a hash of it.
func Owner(urn string) string {
	if ownerRE.MatchString(urn) {
		return urn
	}
	sum := sha256.Sum256([]byte(urn))
	name := urn
	if i := strings.LastIndex(urn, "::"); i >= 0 {
		name = urn[i+2:]
	}
	name = strings.Map(func(r rune) rune {
		if r < 128 && (r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return '-'
	}, name)
	if len(name) > 80 {
		name = name[:80]
	}
	return "tier:" + name + "@" + hex.EncodeToString(sum[:12])
}

// ownerRE mirrors the inventory's owner syntax.
var ownerRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$`)
