package inventory

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/consul/api"
)

// A machine being deployed, or deployed, has a deploy spec at
//
//	PREFIX/deploy/<id>   DeploySpec as JSON
//
// written in the same transaction as allocated → deploying and deleted in
// the same transaction as the machine's return to ready (or its deletion),
// so a spec exists exactly while the machine is deploying, deployed, failed
// or releasing after a deploy.

// DeploySpec is what a machine is deployed with: the image, and what the
// deployed OS's cloud-init gets (NoCloud).
type DeploySpec struct {
	// Image and ImageVersion name a version in the image catalog.
	Image        string `json:"image"`
	ImageVersion string `json:"image_version"`
	// Hostname is the deployed OS's host name.
	Hostname string `json:"hostname"`
	// SSHKeys are authorized_keys lines for the default user.
	SSHKeys []string `json:"ssh_keys,omitempty"`
	// Role is the machine's tier role, passed to cloud-init; may be empty.
	Role string `json:"role,omitempty"`
	// UserData is the operator's cloud-init user-data (#cloud-config or a
	// script), merged by the renderer; may be empty.
	UserData string `json:"user_data,omitempty"`
	// ConsulJoin is the address the deployed OS's Consul agent joins; may
	// be empty.
	ConsulJoin string `json:"consul_join,omitempty"`
	// Services are registered with the deployed OS's Consul agent, which
	// runs their health checks; they need ConsulJoin.
	Services []DeployService `json:"services,omitempty"`
	// RootDisk is the root-device hint: a where-expression over one disk's
	// fields (ParseDiskWhere). Empty: the agent takes the first disk that
	// fits (today's rule).
	RootDisk string `json:"root_disk,omitempty"`
	// RootLayout is LayoutFlat (or empty) or LayoutMirror.
	RootLayout string `json:"root_layout,omitempty"`
	// RootDisks are the disks RootDisk chose from the machine's facts when
	// the deploy was requested (one, or two for a mirror). Set by
	// StartDeploy; the agent checks them against what it sees.
	RootDisks []Disk `json:"root_disks,omitempty"`
	// NoCloudToken authenticates the machine's NoCloud requests:
	// "<id>.<48 hex>". Set by StartDeploy.
	NoCloudToken string `json:"nocloud_token"`
	// RequestedAt is when the deploy started. Set by StartDeploy.
	RequestedAt time.Time `json:"requested_at"`
	// HostKeyToken authenticates the deployed OS's one report of its SSH
	// host keys (RecordHostKeys): "<id>.<48 hex>", set by StartDeploy,
	// carried only by the deploy's user-data, cleared when used, refused
	// after RequestedAt + HostKeyTokenTTL. It is kept as the NoCloud token
	// is, in the clear: the boot server renders it into the user-data,
	// which that token alone fetches, so a hash here would protect nothing
	// the user-data does not give away; what protects it is that it
	// works once, and is gone from the spec and the user-data after.
	HostKeyToken string `json:"host_key_token,omitempty"`
	// HostKeysReportedAt is when the machine reported its host keys (the
	// token was used); zero until then.
	HostKeysReportedAt time.Time `json:"host_keys_reported_at,omitzero"`
}

// DeployService is a Consul service a machine serves, with the health
// check its own Consul agent runs against it. It is the one definition of a
// service: `ironrack deploy --service` parses it (ParseDeployService), a
// tier's spec lists it (tiers.Spec.Services, the tier program's tiers), the
// Pulumi provider's ServiceArgs decode into it, and the deploy spec stores
// it. ValidateServices is its one validation and CheckKind its one check
// parser.
type DeployService struct {
	// Name is the Consul service name.
	Name string `json:"name"`
	// Port is the service's TCP port on the machine.
	Port int `json:"port"`
	// Check is "tcp" (connect to the port) or "http:PATH" (GET PATH on the
	// port; 2xx passes). Empty means "tcp". There is no "ttl": nothing on a
	// deployed machine would feed one.
	Check string `json:"check,omitempty"`
	// Interval is how often the check runs. If 0, 10s.
	Interval time.Duration `json:"interval,omitempty"`
}

// CheckKind splits Check into "tcp" or "http" and the HTTP path; an
// unknown check is an error naming it.
func (s DeployService) CheckKind() (kind, path string, err error) {
	kind, path, want := checkKind(s.Check)
	if want != "" {
		return "", "", fmt.Errorf("check %q: %s", s.Check, want)
	}
	return kind, path, nil
}

// checkKind parses a check; want says what a bad one should be.
func checkKind(c string) (kind, path, want string) {
	switch {
	case c == "" || c == "tcp":
		return "tcp", "", ""
	case strings.HasPrefix(c, "http:"):
		path = strings.TrimPrefix(c, "http:")
		if !strings.HasPrefix(path, "/") || len(path) > 1024 || strings.ContainsAny(path, " \t\r\n\x00#") {
			return "", "", "want http:/PATH (a URL path, no spaces)"
		}
		return "http", path, ""
	}
	return "", "", "want tcp or http:/PATH"
}

// ServiceError is one bad input of a list of services: Field names it as
// the deploy spec's JSON does ("services[1].port"; "services" for the
// list), Problem gives the bad value and what is wanted.
type ServiceError struct {
	Field, Problem string
}

func (e *ServiceError) Error() string { return e.Field + " " + e.Problem }

// ValidateServices checks a list of services: at most 64, each name a
// Consul service name given once, each port a TCP port, each check one
// CheckKind parses, each interval 0 or 1s to 1h.
func ValidateServices(svcs []DeployService) []*ServiceError {
	var errs []*ServiceError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ServiceError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if len(svcs) > maxServices {
		bad("services", "%d: at most %d", len(svcs), maxServices)
	}
	seen := map[string]bool{}
	for i, svc := range svcs {
		f := fmt.Sprintf("services[%d]", i)
		if !serviceNameRE.MatchString(svc.Name) {
			bad(f+".name", "%q: want a Consul service name (letters, digits and -; at most 63)", svc.Name)
		} else if seen[svc.Name] {
			bad(f+".name", "%q: listed twice", svc.Name)
		}
		seen[svc.Name] = true
		if svc.Port < 1 || svc.Port > 65535 {
			bad(f+".port", "%d: want a TCP port (1-65535)", svc.Port)
		}
		if _, _, want := checkKind(svc.Check); want != "" {
			bad(f+".check", "%q: %s", svc.Check, want)
		}
		if svc.Interval != 0 && (svc.Interval < minInterval || svc.Interval > maxInterval) {
			bad(f+".interval", "%v: want %v to %v", svc.Interval, minInterval, maxInterval)
		}
	}
	return errs
}

// ParseDeployService parses a service as the CLI takes it:
// NAME:PORT[/tcp|/http:PATH], e.g. ssh:22 or api:8080/http:/healthz, and
// validates it. Errors name the text.
func ParseDeployService(text string) (DeployService, error) {
	name, rest, ok := strings.Cut(text, ":")
	if !ok {
		return DeployService{}, fmt.Errorf("service %q: want NAME:PORT[/tcp|/http:PATH]", text)
	}
	port, check, _ := strings.Cut(rest, "/")
	p, err := strconv.Atoi(port)
	if err != nil {
		return DeployService{}, fmt.Errorf("service %q: port %q is not a number", text, port)
	}
	svc := DeployService{Name: name, Port: p, Check: check}
	d := DeploySpec{Image: "x", ImageVersion: "x", Hostname: "x", ConsulJoin: "x", Services: []DeployService{svc}}
	if err := d.Validate(); err != nil {
		return DeployService{}, fmt.Errorf("service %q: %w", text, err)
	}
	return svc, nil
}

// Limits of a deploy spec (Consul values are at most 512 KiB).
const (
	maxUserData = 64 << 10
	maxSSHKeys  = 64
	maxSSHKey   = 8 << 10
	maxServices = 64
	minInterval = time.Second
	maxInterval = time.Hour
)

// serviceNameRE is a Consul service name that is also a DNS label (no _).
var serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,62}$`)

// Validate checks a spec's operator-given fields; each error names the field.
func (d *DeploySpec) Validate() error {
	var errs []error
	seg := func(field, v string) {
		switch {
		case v == "":
			errs = append(errs, fmt.Errorf("deploy spec: %s is empty", field))
		case len(v) > maxField || !plainRE.MatchString(v) || strings.ContainsAny(v, "/ ") || v == "." || v == "..":
			errs = append(errs, fmt.Errorf("deploy spec: %s %q: want letters, digits and _.:- (no / or spaces)", field, v))
		}
	}
	seg("image", d.Image)
	seg("image_version", d.ImageVersion)
	if len(d.Hostname) > 63 || !hostnameRE.MatchString(d.Hostname) || strings.Contains(d.Hostname, ".") {
		errs = append(errs, fmt.Errorf("deploy spec: hostname %q: want one DNS label (letters, digits, -; at most 63)", d.Hostname))
	}
	if len(d.SSHKeys) > maxSSHKeys {
		errs = append(errs, fmt.Errorf("deploy spec: %d ssh keys, at most %d", len(d.SSHKeys), maxSSHKeys))
	}
	for i, k := range d.SSHKeys {
		f := strings.Fields(k)
		switch {
		case len(k) > maxSSHKey:
			errs = append(errs, fmt.Errorf("deploy spec: ssh key %d is %d bytes, at most %d", i+1, len(k), maxSSHKey))
		case strings.ContainsAny(k, "\r\n\x00"):
			errs = append(errs, fmt.Errorf("deploy spec: ssh key %d spans lines; give one key per entry", i+1))
		case len(f) < 2 || !(strings.HasPrefix(f[0], "ssh-") || strings.HasPrefix(f[0], "ecdsa-") || strings.HasPrefix(f[0], "sk-")):
			errs = append(errs, fmt.Errorf("deploy spec: ssh key %d does not look like an authorized_keys line (type base64 [comment])", i+1))
		}
	}
	if d.Role != "" && (len(d.Role) > maxField || !plainRE.MatchString(d.Role)) {
		errs = append(errs, fmt.Errorf("deploy spec: role %q: want letters, digits and _.:/-", d.Role))
	}
	if len(d.UserData) > maxUserData {
		errs = append(errs, fmt.Errorf("deploy spec: user-data is %d bytes, at most %d", len(d.UserData), maxUserData))
	}
	if strings.ContainsRune(d.UserData, 0) || !utf8.ValidString(d.UserData) {
		errs = append(errs, errors.New("deploy spec: user-data is not UTF-8 text"))
	}
	if d.ConsulJoin != "" {
		host, port, err := net.SplitHostPort(d.ConsulJoin)
		if err != nil {
			host, port = d.ConsulJoin, ""
		}
		if !validHost(host) {
			errs = append(errs, fmt.Errorf("deploy spec: consul join address %q: want HOST or HOST:PORT", d.ConsulJoin))
		} else if port != "" {
			if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
				errs = append(errs, fmt.Errorf("deploy spec: consul join address %q: bad port", d.ConsulJoin))
			}
		}
	}
	if len(d.RootDisk) > 4096 {
		errs = append(errs, fmt.Errorf("deploy spec: root disk hint is %d characters, at most 4096", len(d.RootDisk)))
	} else if d.RootDisk != "" {
		if _, err := ParseDiskWhere(d.RootDisk); err != nil {
			errs = append(errs, fmt.Errorf("deploy spec: %w", err))
		}
	}
	if err := ValidateLayout(d.RootLayout, d.RootDisk); err != nil {
		errs = append(errs, fmt.Errorf("deploy spec: %w", err))
	}
	if len(d.Services) > 0 && d.ConsulJoin == "" {
		errs = append(errs, errors.New("deploy spec: services need a Consul agent on the machine: give consul_join"))
	}
	for _, e := range ValidateServices(d.Services) {
		errs = append(errs, fmt.Errorf("deploy spec: %w", e))
	}
	return errors.Join(errs...)
}

func (s *Store) deployKey(id string) string { return s.key("deploy", id) }

// deployOps are the spec's operations in a write: the spec goes when the
// machine returns to ready or is deleted. (An allocated machine never has a
// spec, so the pool's own release, allocated → ready, writes nothing more.)
func (s *Store) deployOps(w *write) api.TxnOps {
	if w.prev == nil {
		return nil
	}
	back := w.next != nil && w.next.State == StateReady && w.prev.State != StateReady && w.prev.State != StateAllocated
	if w.next == nil || back {
		return api.TxnOps{&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.deployKey(w.prev.ID)}},
			&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.releaseKey(w.prev.ID)}}}
	}
	return nil
}

// Claim moves one ready machine to allocated for owner (with tier), or
// accepts one that owner holds already (allocated, same owner). It is the
// deploy workflow's claim of a machine an operator named; Allocate is the
// pool's.
func (s *Store) Claim(ctx context.Context, id, owner, tier string, change Change) (*Machine, error) {
	if !ownerRE.MatchString(owner) {
		return nil, fmt.Errorf("claim %s: malformed owner %q (letters, digits, _.:/@-)", id, owner)
	}
	if change.What == "" {
		change.What = "allocate"
	}
	if change.Why == "" {
		change.Why = "claimed by " + owner
	}
	m, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.State == StateAllocated && m.Owner == owner {
		return m, nil
	}
	return s.Update(ctx, id, System, change, func(m *Machine) error {
		if m.State != StateReady {
			if m.State == StateAllocated {
				return fmt.Errorf("allocated to %q, not %q: %w", m.Owner, owner, ErrConflict)
			}
			return fmt.Errorf("is %s, want ready: %w", m.State, ErrConflict)
		}
		m.State, m.Owner, m.Tier = StateAllocated, owner, tier
		return nil
	})
}

// StartDeploy moves an allocated machine to deploying and stores spec
// (with a fresh NoCloud token, the owner and the time) in the same
// transaction. A root-disk hint is applied to the record's disks in that
// transaction (ChooseRootDisks); no match fails before anything is written.
// It returns the machine and the spec as stored.
func (s *Store) StartDeploy(ctx context.Context, id string, spec DeploySpec, change Change) (*Machine, *DeploySpec, error) {
	if err := spec.Validate(); err != nil {
		return nil, nil, fmt.Errorf("machine %s: %w", id, err)
	}
	var secret [24]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, nil, err
	}
	spec.NoCloudToken = id + "." + hex.EncodeToString(secret[:])
	spec.RequestedAt = s.cfg.Now().UTC()
	var err error
	if spec.HostKeyToken, err = newHostKeyToken(id); err != nil {
		return nil, nil, err
	}
	spec.HostKeysReportedAt = time.Time{}
	if change.What == "" {
		change.What = "deploy"
	}
	if change.Why == "" {
		change.Why = fmt.Sprintf("image %s/%s as %s", spec.Image, spec.ImageVersion, spec.Hostname)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, err
	}
	put := api.TxnOps{&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.deployKey(id), Value: b}}}
	m, err := s.updateWith(ctx, id, System, put, func(m *Machine, c *Change) error {
		*c = change
		if m.State != StateAllocated {
			return fmt.Errorf("is %s: only allocated machines are deployed", m.State)
		}
		if m.Owner == "" {
			return errors.New("is allocated to no owner")
		}
		spec.RootDisks = nil
		if spec.RootDisk != "" {
			chosen, err := ChooseRootDisks(spec.RootDisk, spec.RootLayout, m.Disks)
			if err != nil {
				return err
			}
			spec.RootDisks = chosen
			names := make([]string, len(chosen))
			for i, d := range chosen {
				names[i] = d.Name
			}
			c.Why += fmt.Sprintf("; root disk %s (%s, hint %q)", strings.Join(names, "+"), layoutName(spec.RootLayout), spec.RootDisk)
			b, err := json.Marshal(spec)
			if err != nil {
				return err
			}
			put[0].KV.Value = b
		}
		m.State = StateDeploying
		// The new OS makes new host keys: the old ones are trusted no more.
		m.HostKeys, m.HostCerts = nil, nil
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return m, &spec, nil
}

// Deploy returns a machine's deploy spec, or ErrNotFound when it has none.
func (s *Store) Deploy(ctx context.Context, id string) (*DeploySpec, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kv, _, err := s.c.KV().Get(s.deployKey(id), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read deploy spec of %s: %w", id, err)
	}
	if kv == nil {
		return nil, fmt.Errorf("machine %s has no deploy spec: %w", id, ErrNotFound)
	}
	var d DeploySpec
	if err := json.Unmarshal(kv.Value, &d); err != nil {
		return nil, fmt.Errorf("deploy spec of %s: corrupt: %w", id, err)
	}
	return &d, nil
}

// DeployByToken returns the machine ID and spec a NoCloud token belongs
// to. A malformed, unknown or revoked token is ErrToken.
func (s *Store) DeployByToken(ctx context.Context, token string) (string, *DeploySpec, error) {
	id, sec, ok := strings.Cut(token, ".")
	if !ok || !IsID(id) || len(sec) != 48 {
		return "", nil, ErrToken
	}
	d, err := s.Deploy(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return "", nil, ErrToken
	}
	if err != nil {
		return "", nil, err
	}
	if subtle.ConstantTimeCompare([]byte(d.NoCloudToken), []byte(token)) != 1 {
		return "", nil, ErrToken
	}
	return id, d, nil
}

// FinishDeploy ends a deploy: deploying → deployed when err is nil, →
// failed_deployment with err in the history otherwise. A machine no longer
// deploying is an error (ErrConflict): a late report changes nothing.
func (s *Store) FinishDeploy(ctx context.Context, id string, failure error, change Change) (*Machine, error) {
	return s.finish(ctx, id, StateDeploying, StateDeployed, StateFailedDeployment, "deploy", "image written and verified", failure, change)
}

// StartRelease moves a deployed machine (or one whose deploy or wipe
// failed) to releasing with a quick erase: StartReleaseErase(EraseQuick).
func (s *Store) StartRelease(ctx context.Context, id string, change Change) (*Machine, error) {
	return s.StartReleaseErase(ctx, id, EraseQuick, change)
}

// StartReleaseErase moves a deployed machine (or one whose deploy or wipe
// failed) to releasing, the agent's wipe next, and stores the erase level
// (PREFIX/release/<id>, a ReleaseSpec) in the same transaction; the history
// entry names the level. The key goes with the deploy spec when the machine
// is ready again. Allocated machines that never deployed are released with
// Release.
func (s *Store) StartReleaseErase(ctx context.Context, id, erase string, change Change) (*Machine, error) {
	if err := ValidateErase(erase); err != nil {
		return nil, fmt.Errorf("machine %s: %w", id, err)
	}
	if change.What == "" {
		change.What = "release"
	}
	change.Why = strings.TrimPrefix(change.Why+"; erase "+erase, "; ")
	b, err := json.Marshal(ReleaseSpec{Erase: erase, RequestedAt: s.cfg.Now().UTC()})
	if err != nil {
		return nil, err
	}
	put := api.TxnOps{&api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.releaseKey(id), Value: b}}}
	return s.update(ctx, id, System, change, put, func(m *Machine) error {
		switch m.State {
		case StateDeployed, StateFailedDeployment, StateFailedReleasing:
			m.State = StateReleasing
			return nil
		}
		return fmt.Errorf("is %s: only deployed or failed machines are wiped and released", m.State)
	})
}

// FinishRelease ends a wipe: releasing → ready (owner and tier cleared,
// the deploy spec deleted in the same transaction) when failure is nil, →
// failed_releasing otherwise. A machine no longer releasing is ErrConflict.
func (s *Store) FinishRelease(ctx context.Context, id string, failure error, change Change) (*Machine, error) {
	return s.finish(ctx, id, StateReleasing, StateReady, StateFailedReleasing, "release", "disks wiped", failure, change)
}

// finish ends the agent's step on a machine in state from: → ok when
// failure is nil (a machine back to ready loses its owner and tier), →
// failed with failure in the history otherwise. A machine no longer in
// from is ErrConflict: a late report changes nothing.
func (s *Store) finish(ctx context.Context, id string, from, ok, failed State, what, okWhy string, failure error, change Change) (*Machine, error) {
	to := ok
	if change.What == "" {
		change.What = what
	}
	if failure != nil {
		to = failed
		change.Why = failure.Error()
	} else if change.Why == "" {
		change.Why = okWhy
	}
	return s.Update(ctx, id, System, change, func(m *Machine) error {
		if m.State != from {
			return fmt.Errorf("is %s, not %s: %w", m.State, from, ErrConflict)
		}
		m.State = to
		if to == StateReady {
			m.Owner, m.Tier = "", ""
			m.HostKeys, m.HostCerts = nil, nil // the disks are wiped: no OS, no host keys
		}
		return nil
	})
}

// Watch waits (a Consul blocking query, at most wait) until machine id's
// record changes past index, and returns it with its new index. Index 0
// returns at once. Every change of a machine, history entries included,
// changes its record.
func (s *Store) Watch(ctx context.Context, id string, index uint64, wait time.Duration) (*Machine, int64, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, wait+s.cfg.OpTimeout)
	defer cancel()
	kv, meta, err := s.c.KV().Get(s.machineKey(id), (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx))
	if err != nil {
		return nil, 0, index, fmt.Errorf("watch machine %s: %w", id, err)
	}
	if kv == nil {
		return nil, 0, meta.LastIndex, fmt.Errorf("machine %s: %w", id, ErrNotFound)
	}
	r, err := decodeRecord(kv.Value)
	if err != nil {
		return nil, 0, index, fmt.Errorf("machine %s: %w", id, err)
	}
	return &r.Machine, r.HistorySeq, kv.ModifyIndex, nil
}

// HistoryRange returns a machine's history entries with sequence numbers
// in (after, upto], oldest first, in one read transaction (entries already
// dropped by the cap are skipped).
func (s *Store) HistoryRange(ctx context.Context, id string, after, upto int64) ([]HistoryEntry, error) {
	if upto <= after {
		return nil, nil
	}
	if upto-after > int64(s.cfg.HistoryCap) {
		after = upto - int64(s.cfg.HistoryCap)
	}
	var keys []string
	for seq := after + 1; seq <= upto; seq++ {
		keys = append(keys, s.historyKey(id, seq))
	}
	var out []HistoryEntry
	var mu sync.Mutex
	err := s.getMany(ctx, keys, func(kvs []*api.KVPair) error {
		mu.Lock()
		defer mu.Unlock()
		for _, kv := range kvs {
			var h HistoryEntry
			if err := json.Unmarshal(kv.Value, &h); err != nil {
				return fmt.Errorf("history of %s: corrupt entry %s: %w", id, kv.Key, err)
			}
			out = append(out, h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortHistory(out)
	return out, nil
}

func sortHistory(h []HistoryEntry) {
	for i := 1; i < len(h); i++ {
		for j := i; j > 0 && h[j].Seq < h[j-1].Seq; j-- {
			h[j], h[j-1] = h[j-1], h[j]
		}
	}
}

// Erase levels of a release: what the agent's wipe does to every disk.
const (
	// EraseQuick zeroes each disk's first and last MiB (partition tables,
	// the backup GPT, file system signatures).
	EraseQuick = "quick"
	// EraseZero overwrites every byte with zeros, reporting progress.
	EraseZero = "zero"
	// EraseSecure uses the drive's own erase (NVMe format with user data
	// erase, ATA security erase); a disk that cannot is refused, and the
	// wipe fails naming it.
	EraseSecure = "secure"
)

// EraseLevels are the erase levels, quickest first.
var EraseLevels = []string{EraseQuick, EraseZero, EraseSecure}

// ValidateErase checks an erase level.
func ValidateErase(erase string) error {
	for _, l := range EraseLevels {
		if erase == l {
			return nil
		}
	}
	return fmt.Errorf("erase level %q: want %s", erase, strings.Join(EraseLevels, ", "))
}

// ReleaseSpec is how a releasing machine is wiped, at PREFIX/release/<id>
// from StartReleaseErase until the machine is ready again.
type ReleaseSpec struct {
	Erase       string    `json:"erase"`
	RequestedAt time.Time `json:"requested_at"`
}

func (s *Store) releaseKey(id string) string { return s.key("release", id) }

// ReleaseSpec returns a releasing machine's release spec, or ErrNotFound.
func (s *Store) ReleaseSpec(ctx context.Context, id string) (*ReleaseSpec, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	kv, _, err := s.c.KV().Get(s.releaseKey(id), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read release spec of %s: %w", id, err)
	}
	if kv == nil {
		return nil, fmt.Errorf("machine %s has no release spec: %w", id, ErrNotFound)
	}
	var r ReleaseSpec
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return nil, fmt.Errorf("release spec of %s: corrupt: %w", id, err)
	}
	return &r, nil
}
