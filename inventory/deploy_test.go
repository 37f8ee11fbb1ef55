package inventory

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func deployableMachine(t *testing.T, s *Store, serial string) string {
	t.Helper()
	ctx := context.Background()
	m, _, err := s.Enlist(ctx, Sighting{Serial: serial, MACs: []string{"52:54:00:aa:00:0" + serial[len(serial)-1:]}, Source: "pxe"}, Change{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commission(ctx, m.ID, Facts{Serial: serial, CPUCores: 1, MemGB: 1, NICs: []NIC{{MAC: m.NICs[0].MAC}}}, Change{}); err != nil {
		t.Fatal(err)
	}
	return m.ID
}

func goodSpec() DeploySpec {
	return DeploySpec{Image: "debian", ImageVersion: "12-abc", Hostname: "web-1",
		SSHKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoo test@lab"}, Role: "web", ConsulJoin: "192.0.2.1:8301",
		Services: []DeployService{{Name: "ssh", Port: 22}, {Name: "api", Port: 8080, Check: "http:/healthz", Interval: 5 * time.Second}}}
}

// TestDeployLifecycle walks one machine through claim → deploying (spec
// written in the same transaction) → deployed → releasing → ready (spec
// gone in the same transaction), against a real Consul, and checks that
// the token finds the spec only while it exists.
func TestDeployLifecycle(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	id := deployableMachine(t, s, "DEP-1")

	if _, _, err := s.StartDeploy(ctx, id, goodSpec(), Change{}); err == nil || !strings.Contains(err.Error(), "only allocated") {
		t.Fatalf("deploy of a ready machine: %v, want refused (only allocated)", err)
	}
	if _, err := s.Deploy(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("spec after a refused deploy: %v, want ErrNotFound", err)
	}
	if _, err := s.Claim(ctx, id, "alice", "web", Change{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, id, "alice", "web", Change{}); err != nil {
		t.Fatalf("re-claim by the same owner: %v", err)
	}
	if _, err := s.Claim(ctx, id, "bob", "", Change{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("claim by another owner: %v, want ErrConflict", err)
	}
	m, spec, err := s.StartDeploy(ctx, id, goodSpec(), Change{})
	if err != nil {
		t.Fatal(err)
	}
	if m.State != StateDeploying || m.Owner != "alice" {
		t.Fatalf("after StartDeploy: %s owner %q", m.State, m.Owner)
	}
	if !strings.HasPrefix(spec.NoCloudToken, id+".") || len(spec.NoCloudToken) != len(id)+1+48 {
		t.Fatalf("token %q", spec.NoCloudToken)
	}
	got, err := s.Deploy(ctx, id)
	if err != nil || got.Hostname != "web-1" || got.NoCloudToken != spec.NoCloudToken {
		t.Fatalf("stored spec %+v, %v", got, err)
	}
	if want := goodSpec().Services; len(got.Services) != 2 || got.Services[0] != want[0] || got.Services[1] != want[1] {
		t.Fatalf("stored services %+v, want %+v", got.Services, want)
	}
	if gid, _, err := s.DeployByToken(ctx, spec.NoCloudToken); err != nil || gid != id {
		t.Fatalf("by token: %s %v", gid, err)
	}
	for _, bad := range []string{"", "x", id + ".", id + "." + strings.Repeat("0", 48), "m-000000000000." + strings.Repeat("a", 48)} {
		if _, _, err := s.DeployByToken(ctx, bad); !errors.Is(err, ErrToken) {
			t.Errorf("token %q: %v, want ErrToken", bad, err)
		}
	}
	// A deployed machine cannot be deployed again or released to the pool directly.
	if _, err := s.FinishDeploy(ctx, id, nil, Change{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishDeploy(ctx, id, nil, Change{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second FinishDeploy: %v, want ErrConflict", err)
	}
	if _, err := s.FinishRelease(ctx, id, nil, Change{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("FinishRelease of a deployed machine: %v, want ErrConflict", err)
	}
	if _, err := s.StartRelease(ctx, id, Change{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deploy(ctx, id); err != nil {
		t.Fatalf("spec while releasing: %v (the wipe still needs it? it stays until ready)", err)
	}
	m, err = s.FinishRelease(ctx, id, nil, Change{})
	if err != nil {
		t.Fatal(err)
	}
	if m.State != StateReady || m.Owner != "" || m.Tier != "" {
		t.Fatalf("after release: %s owner %q tier %q", m.State, m.Owner, m.Tier)
	}
	if _, err := s.Deploy(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("spec after release: %v, want gone", err)
	}
	if _, _, err := s.DeployByToken(ctx, spec.NoCloudToken); !errors.Is(err, ErrToken) {
		t.Fatalf("token after release: %v, want ErrToken", err)
	}
	h, err := s.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, e := range h {
		if e.To != "" {
			path = append(path, string(e.To))
		}
	}
	want := "commissioning ready allocated deploying deployed releasing ready"
	if got := strings.Join(path, " "); !strings.HasSuffix(got, want) {
		t.Errorf("history states %q, want suffix %q", got, want)
	}
}

// TestDeployFailure: a failed deploy names its reason in history; the spec
// stays (the wipe of a failed deploy is a release), and a late success
// report changes nothing.
func TestDeployFailure(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	id := deployableMachine(t, s, "DEP-2")
	if _, err := s.Claim(ctx, id, "alice", "", Change{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.StartDeploy(ctx, id, goodSpec(), Change{}); err != nil {
		t.Fatal(err)
	}
	m, err := s.FinishDeploy(ctx, id, errors.New("verify: sha256 mismatch"), Change{Who: "boot-server"})
	if err != nil || m.State != StateFailedDeployment {
		t.Fatalf("%v %v", m, err)
	}
	if _, err := s.FinishDeploy(ctx, id, nil, Change{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("late success: %v, want ErrConflict", err)
	}
	if m, _ := s.Get(ctx, id); m.State != StateFailedDeployment {
		t.Fatalf("state %s after a late success, want failed_deployment", m.State)
	}
	h, _ := s.History(ctx, id)
	if last := h[len(h)-1]; last.To != StateFailedDeployment || !strings.Contains(last.Why, "verify: sha256 mismatch") {
		t.Fatalf("last history %+v", last)
	}
	if _, err := s.StartRelease(ctx, id, Change{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishRelease(ctx, id, errors.New("wipe: /dev/vda: I/O error"), Change{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deploy(ctx, id); err != nil {
		t.Fatalf("spec after a failed wipe: %v, want kept", err)
	}
}

// TestDeploySpecValidate refuses bad operator input, naming the field, and
// writes nothing.
func TestDeploySpecValidate(t *testing.T) {
	cases := map[string]struct {
		edit func(*DeploySpec)
		want string
	}{
		"no image":           {func(d *DeploySpec) { d.Image = "" }, "image is empty"},
		"traversal":          {func(d *DeploySpec) { d.ImageVersion = "../x" }, "image_version"},
		"hostname with dot":  {func(d *DeploySpec) { d.Hostname = "a.b" }, "hostname"},
		"hostname newline":   {func(d *DeploySpec) { d.Hostname = "a\nb" }, "hostname"},
		"ssh key two lines":  {func(d *DeploySpec) { d.SSHKeys = []string{"ssh-rsa AAA a\nssh-rsa BBB"} }, "spans lines"},
		"ssh key garbage":    {func(d *DeploySpec) { d.SSHKeys = []string{"hello"} }, "authorized_keys"},
		"user-data too big":  {func(d *DeploySpec) { d.UserData = strings.Repeat("x", 65<<10) }, "user-data is"},
		"user-data not utf8": {func(d *DeploySpec) { d.UserData = "\xff\xfe" }, "not UTF-8"},
		"consul join port":   {func(d *DeploySpec) { d.ConsulJoin = "192.0.2.1:99999" }, "bad port"},
		"services no consul": {func(d *DeploySpec) { d.ConsulJoin = "" }, "services need a Consul agent"},
		"service name":       {func(d *DeploySpec) { d.Services[1].Name = "a b" }, "services[1].name"},
		"service name _":     {func(d *DeploySpec) { d.Services[1].Name = "a_b" }, "services[1].name"},
		"service twice":      {func(d *DeploySpec) { d.Services[1].Name = "ssh" }, `services[1].name "ssh": listed twice`},
		"service port":       {func(d *DeploySpec) { d.Services[0].Port = 0 }, "services[0].port 0"},
		"service port big":   {func(d *DeploySpec) { d.Services[0].Port = 70000 }, "services[0].port 70000"},
		"service check":      {func(d *DeploySpec) { d.Services[0].Check = "udp" }, `services[0].check "udp"`},
		"service ttl":        {func(d *DeploySpec) { d.Services[0].Check = "ttl" }, "services[0].check"},
		"service http path":  {func(d *DeploySpec) { d.Services[1].Check = "http:health" }, "services[1].check"},
		"service http space": {func(d *DeploySpec) { d.Services[1].Check = "http:/a b" }, "services[1].check"},
		"service interval":   {func(d *DeploySpec) { d.Services[1].Interval = time.Millisecond }, "services[1].interval 1ms"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := goodSpec()
			c.edit(&d)
			err := d.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate: %v, want %q", err, c.want)
			}
		})
	}
	if err := (&DeploySpec{Image: "debian", ImageVersion: "1", Hostname: "h"}).Validate(); err != nil {
		t.Fatalf("minimal spec: %v", err)
	}
}

// TestParseDeployService: the CLI's NAME:PORT[/tcp|/http:PATH].
func TestParseDeployService(t *testing.T) {
	for text, want := range map[string]DeployService{
		"ssh:22":                 {Name: "ssh", Port: 22},
		"ssh:22/tcp":             {Name: "ssh", Port: 22, Check: "tcp"},
		"api:8080/http:/healthz": {Name: "api", Port: 8080, Check: "http:/healthz"},
		"api:8080/http:/a/b?x=1": {Name: "api", Port: 8080, Check: "http:/a/b?x=1"},
	} {
		got, err := ParseDeployService(text)
		if err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", text, got, err, want)
		}
	}
	for text, want := range map[string]string{
		"ssh":                "want NAME:PORT",
		"ssh:x":              `port "x" is not a number`,
		"ssh:0":              "services[0].port 0",
		"a b:22":             "services[0].name",
		"api:8080/http:heal": "services[0].check",
		"api:8080/udp":       `check "udp"`,
	} {
		if _, err := ParseDeployService(text); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), text) {
			t.Errorf("%q: %v, want an error naming it and %q", text, err, want)
		}
	}
}

// TestWatch: a blocking watch returns when a history entry lands, and
// HistoryRange returns exactly the new entries.
func TestWatch(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	id := deployableMachine(t, s, "DEP-3")
	_, seq, idx, err := s.Watch(ctx, id, 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = s.NoteBoot(context.Background(), id, "agent deploy", "progress 40%")
	}()
	start := time.Now()
	_, seq2, idx2, err := s.Watch(ctx, id, idx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if idx2 == idx || seq2 != seq+1 || time.Since(start) > 5*time.Second {
		t.Fatalf("watch: index %d→%d seq %d→%d after %v", idx, idx2, seq, seq2, time.Since(start))
	}
	h, err := s.HistoryRange(ctx, id, seq, seq2)
	if err != nil || len(h) != 1 || h[0].Why != "progress 40%" {
		t.Fatalf("range: %+v %v", h, err)
	}
}

// TestReleaseErase: the erase level is stored with releasing (one
// transaction) and named in the history; a releasing machine cannot be
// claimed or allocated until its wipe finished; a failed wipe leaves it
// failed_releasing (still not claimable) and a second release may take
// another level; the level's key goes when the machine is ready.
func TestReleaseErase(t *testing.T) {
	s, _ := testStore(t)
	ctx := context.Background()
	id := deployableMachine(t, s, "ERASE-1")
	if _, err := s.Claim(ctx, id, "alice", "", Change{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.StartDeploy(ctx, id, goodSpec(), Change{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishDeploy(ctx, id, nil, Change{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartReleaseErase(ctx, id, "shred", Change{}); err == nil || !strings.Contains(err.Error(), `erase level "shred": want quick, zero, secure`) {
		t.Fatalf("unknown level: %v", err)
	}
	if m, _ := s.Get(ctx, id); m.State != StateDeployed {
		t.Fatalf("an unknown level changed the state to %s", m.State)
	}
	if _, err := s.StartReleaseErase(ctx, id, EraseSecure, Change{Why: "decommission"}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.ReleaseSpec(ctx, id); err != nil || r.Erase != EraseSecure {
		t.Fatalf("release spec %+v, %v", r, err)
	}
	notClaimable := func(when string) {
		t.Helper()
		if _, err := s.Claim(ctx, id, "bob", "", Change{}); !errors.Is(err, ErrConflict) {
			t.Errorf("claim while %s: %v, want ErrConflict", when, err)
		}
		got, err := s.Allocate(ctx, AllocateRequest{Owner: "bob", Count: 1})
		if err == nil && len(got) > 0 {
			t.Errorf("allocate while %s took %v", when, got[0].ID)
		}
	}
	notClaimable("releasing")
	if _, err := s.FinishRelease(ctx, id, errors.New("agent: wipe failed: erase secure: /dev/vda: no secure erase"), Change{}); err != nil {
		t.Fatal(err)
	}
	notClaimable("failed_releasing")
	if _, err := s.StartReleaseErase(ctx, id, EraseZero, Change{}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.ReleaseSpec(ctx, id); err != nil || r.Erase != EraseZero {
		t.Fatalf("second release spec %+v, %v", r, err)
	}
	if _, err := s.FinishRelease(ctx, id, nil, Change{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReleaseSpec(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("release spec after ready: %v, want gone", err)
	}
	h, _ := s.History(ctx, id)
	var whys []string
	for _, e := range h {
		whys = append(whys, e.What+": "+e.Why)
	}
	all := strings.Join(whys, "\n")
	for _, want := range []string{"release: decommission; erase secure", "release: erase zero", "no secure erase"} {
		if !strings.Contains(all, want) {
			t.Errorf("history lacks %q:\n%s", want, all)
		}
	}
}
