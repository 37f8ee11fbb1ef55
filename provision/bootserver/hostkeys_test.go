package bootserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/internal/servetest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/hostkeys"
	"github.com/ironrack/ironrack/provision/bootserver"
	"github.com/ironrack/ironrack/provision/httpboot"
	"github.com/ironrack/ironrack/provision/ipxe"
)

type hostKeysFixture struct {
	base  string
	store *inventory.Store
	ca    ssh.PublicKey
	// skew is added to the store's clock.
	skew *atomic.Int64
}

// startHostKeysServer runs the boot server's HTTP side over the real
// adapter and a real Consul, with an SSH CA set up and the store's clock
// adjustable (token expiry).
func startHostKeysServer(t *testing.T) hostKeysFixture {
	t.Helper()
	agent := consuldev.T(t)
	c, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	skew := &atomic.Int64{}
	st := inventory.New(c, inventory.Config{Who: "test", Sealer: inventory.NewSealer([32]byte{7}),
		Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	pub, priv, err := hostkeys.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.InitSSHCA(context.Background(), pub, priv); err != nil {
		t.Fatal(err)
	}
	caKey, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(pub))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	inv := &bootserver.Backend{Store: st, DataDir: t.TempDir(), BaseURL: base}
	srv, err := httpboot.New(httpboot.Config{
		Listener: ln, Env: ipxe.Env{BaseURL: base},
		Machines: inv, Tokens: inv, Reports: inv, Deploys: inv, HostKeys: inv,
	})
	if err != nil {
		t.Fatal(err)
	}
	servetest.Run(t, 10*time.Second, srv.Serve)
	return hostKeysFixture{base: base, store: st, ca: caKey, skew: skew}
}

// deployed enlists, commissions, claims and starts a deploy of a machine,
// as the deploy workflow does, and returns its ID and spec.
func deployed(t *testing.T, st *inventory.Store, n int) (string, *inventory.DeploySpec) {
	t.Helper()
	ctx := context.Background()
	mac, serial := fmt.Sprintf("52:54:00:44:00:%02x", n), fmt.Sprintf("HK-%d", n)
	m, _, err := st.Enlist(ctx, inventory.Sighting{Serial: serial, MACs: []string{mac}, Source: "pxe"}, inventory.Change{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commission(ctx, m.ID, inventory.Facts{Serial: serial, CPUCores: 1, MemGB: 1, NICs: []inventory.NIC{{MAC: mac}}}, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	return redeploy(t, st, m.ID, fmt.Sprintf("web-%d", n))
}

func redeploy(t *testing.T, st *inventory.Store, id, hostname string) (string, *inventory.DeploySpec) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.Claim(ctx, id, "alice", "", inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	_, spec, err := st.StartDeploy(ctx, id, inventory.DeploySpec{Image: "debian", ImageVersion: "1", Hostname: hostname,
		SSHKeys: []string{labtest.NewSSHKey(t).Authorized}}, inventory.Change{})
	if err != nil {
		t.Fatal(err)
	}
	return id, spec
}

// firstBoot fetches the deploy's user-data from the boot server as
// cloud-init does, and runs its host-key step as bootcmd would, with
// Debian's python3 and ssh-keygen, on dir in place of /etc/ssh. It returns
// the step's log.
func firstBoot(t *testing.T, f hostKeysFixture, spec *inventory.DeploySpec, dir string) string {
	t.Helper()
	resp, body := get(t, f.base+"/nocloud/"+spec.NoCloudToken+"/user-data")
	if resp.StatusCode != 200 {
		t.Fatalf("user-data: %d %s", resp.StatusCode, body)
	}
	var cc struct {
		Bootcmd [][]string `yaml:"bootcmd"`
	}
	if err := yaml.Unmarshal([]byte(body), &cc); err != nil {
		t.Fatal(err)
	}
	if len(cc.Bootcmd) != 1 || len(cc.Bootcmd[0]) != 9 || cc.Bootcmd[0][3] != "python3" || cc.Bootcmd[0][8] != images.HostKeysDir {
		t.Fatalf("user-data has no host-key step: %q", cc.Bootcmd)
	}
	args := cc.Bootcmd[0][4:]
	if args[2] != f.base+wire.HostKeysPath || args[3] != spec.HostKeyToken {
		t.Fatalf("host-key step posts to %q with %q", args[2], args[3])
	}
	args[4] = dir
	cmd := exec.Command("/usr/bin/python3", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("host-key step: %v\n%s", err, out)
	}
	return string(out)
}

// TestHostKeysFirstBoot runs the seed's real first-boot step against the
// real boot server handler over Consul: the keys it makes are recorded,
// each with a host certificate of ironrack's CA that the step installs
// with the sshd drop-in; the token then is spent: a second run is refused
// and changes nothing, and the user-data no longer carries the step.
// A redeploy clears the keys, and only its new token records new ones.
func TestHostKeysFirstBoot(t *testing.T) {
	f := startHostKeysServer(t)
	ctx := context.Background()
	id, spec := deployed(t, f.store, 1)
	dir := t.TempDir()
	log := firstBoot(t, f, spec, dir)
	if !strings.Contains(log, "reported 3 keys, installed 3 certificates") {
		t.Errorf("step log: %s", log)
	}
	m, err := f.store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	pubs, _ := filepath.Glob(filepath.Join(dir, "ssh_host_*_key.pub"))
	var want []string
	for _, p := range pubs {
		b, _ := os.ReadFile(p)
		k, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, inventory.CanonicalKey(k))
	}
	if len(want) != 3 || !slices.Equal(m.HostKeys, want) {
		t.Fatalf("recorded %q, want the keys the step made %q", m.HostKeys, want)
	}
	if len(m.HostCerts) != 3 {
		t.Fatalf("recorded %d certificates", len(m.HostCerts))
	}
	conf, err := os.ReadFile(filepath.Join(dir, images.HostCertConf))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pubs {
		cp := strings.TrimSuffix(p, ".pub") + "-cert.pub"
		b, err := os.ReadFile(cp)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(b)) != m.HostCerts[i] {
			t.Errorf("%s is not the recorded certificate", cp)
		}
		if !strings.Contains(string(conf), "HostCertificate "+cp+"\n") {
			t.Errorf("%s does not name %s:\n%s", images.HostCertConf, cp, conf)
		}
		k, _, _, _, _ := ssh.ParseAuthorizedKey(b)
		c := k.(*ssh.Certificate)
		checker := ssh.CertChecker{}
		if c.CertType != ssh.HostCert || !bytes.Equal(c.SignatureKey.Marshal(), f.ca.Marshal()) ||
			!slices.Equal(c.ValidPrincipals, []string{id, "web-1"}) || checker.CheckCert("web-1", c) != nil ||
			time.Until(time.Unix(int64(c.ValidBefore), 0)) < 364*24*time.Hour {
			t.Errorf("certificate %s: type %d principals %q valid before %v", cp, c.CertType, c.ValidPrincipals, time.Unix(int64(c.ValidBefore), 0))
		}
	}
	h, err := f.store.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if last := h[len(h)-1]; last.What != "host keys" || last.Who != "boot-server" || !strings.Contains(last.Why, "SHA256:") {
		t.Errorf("history: %+v", last)
	}

	// Spent: a second first boot is refused, and nothing changes.
	before := m.UpdatedAt
	if log := firstBoot2(t, f, spec, t.TempDir()); !strings.Contains(log, "403") || !strings.Contains(log, "already used") {
		t.Errorf("second run: %s", log)
	}
	if m2, _ := f.store.Get(ctx, id); !m2.UpdatedAt.Equal(before) || !slices.Equal(m2.HostKeys, want) {
		t.Errorf("a spent token changed the record")
	}
	if _, body := get(t, f.base+"/nocloud/"+spec.NoCloudToken+"/user-data"); strings.Contains(body, "bootcmd") || strings.Contains(body, spec.HostKeyToken) {
		t.Errorf("user-data still carries the spent token")
	}

	// Redeploy: the old keys go, the old token stays refused, the new
	// one records the new OS's keys.
	for _, step := range []func() error{
		func() error { _, err := f.store.FinishDeploy(ctx, id, nil, inventory.Change{}); return err },
		func() error { _, err := f.store.StartRelease(ctx, id, inventory.Change{}); return err },
		func() error { _, err := f.store.FinishRelease(ctx, id, nil, inventory.Change{}); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	_, spec2 := redeploy(t, f.store, id, "web-1b")
	if m, _ := f.store.Get(ctx, id); len(m.HostKeys) != 0 || len(m.HostCerts) != 0 {
		t.Errorf("a redeployed machine keeps its old keys: %q", m.HostKeys)
	}
	if code, body := post(t, f.base+wire.HostKeysPath, spec.HostKeyToken, `{"keys":["`+want[0]+`"]}`); code != 403 {
		t.Errorf("old deploy's token: %d %s", code, body)
	}
	firstBoot(t, f, spec2, t.TempDir())
	if m, _ := f.store.Get(ctx, id); len(m.HostKeys) != 3 || slices.Equal(m.HostKeys, want) {
		t.Errorf("redeploy's keys: %q", m.HostKeys)
	}
}

// firstBoot2 is firstBoot for a spent token: the user-data no longer
// carries the step, so it runs the step of the first render directly.
func firstBoot2(t *testing.T, f hostKeysFixture, spec *inventory.DeploySpec, dir string) string {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", "-c", images.HostKeysScript, f.base+wire.HostKeysPath, spec.HostKeyToken, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("host-key step: %v\n%s", err, out)
	}
	return string(out)
}

// TestHostKeysTokens: through the real handler over Consul, every token
// but the deploy's own, unused and in time, is refused (401 without one,
// 403 otherwise) and logged, and the machine's record is untouched; a bad
// report is 400 and does not spend the token.
func TestHostKeysTokens(t *testing.T) {
	f := startHostKeysServer(t)
	ctx := context.Background()
	idA, specA := deployed(t, f.store, 2)
	idB, specB := deployed(t, f.store, 3)
	_, specC := deployed(t, f.store, 4)
	key := inventory.CanonicalKey(labtestKey(t))
	report := `{"keys":["` + key + ` root@web"]}`
	secretA := strings.SplitN(specA.HostKeyToken, ".", 2)[1]

	cases := map[string]struct {
		token, body string
		code        int
		want        string
	}{
		"no token":      {"", report, 401, "missing bearer token"},
		"malformed":     {"garbage", report, 403, "malformed"},
		"unknown":       {idB + "." + strings.Repeat("0", 48), report, 403, "not the token of machine " + idB},
		"wrong machine": {idB + "." + secretA, report, 403, "not the token of machine " + idB},
		"no deploy":     {"m-000000000000." + secretA, report, 403, "has no deploy"},
		"nocloud token": {specB.NoCloudToken, report, 403, "not the token"},
		"bad report":    {specB.HostKeyToken, `{"keys":["ssh-ed25519 AAAA"]}`, 400, "blob too short"},
		"private key":   {specB.HostKeyToken, `{"keys":["` + key + `"],"private_key":"x"}`, 400, "unknown field"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			code, body := post(t, f.base+wire.HostKeysPath, c.token, c.body)
			if code != c.code || !strings.Contains(body, c.want) {
				t.Errorf("%d %q, want %d with %q", code, body, c.code, c.want)
			}
		})
	}
	for _, id := range []string{idA, idB} {
		if m, _ := f.store.Get(ctx, id); len(m.HostKeys) != 0 {
			t.Errorf("%s recorded keys from a refused report: %q", id, m.HostKeys)
		}
	}
	// The bad reports did not spend B's token.
	code, body := post(t, f.base+wire.HostKeysPath, specB.HostKeyToken, report)
	var reply wire.HostKeysReply
	if code != 200 || json.Unmarshal([]byte(body), &reply) != nil || len(reply.Certificates) != 1 {
		t.Fatalf("B's own token: %d %s", code, body)
	}
	if m, _ := f.store.Get(ctx, idB); !slices.Equal(m.HostKeys, []string{key}) || !slices.Equal(m.HostCerts, reply.Certificates) {
		t.Errorf("B recorded %q %q", m.HostKeys, m.HostCerts)
	}
	if code, body := post(t, f.base+wire.HostKeysPath, specB.HostKeyToken, report); code != 403 || !strings.Contains(body, "already used") {
		t.Errorf("B's token again: %d %s", code, body)
	}

	// Expired: a day after the deploy started, C's unused token is refused.
	f.skew.Store(int64(inventory.HostKeyTokenTTL + time.Minute))
	if code, body := post(t, f.base+wire.HostKeysPath, specC.HostKeyToken, report); code != 403 || !strings.Contains(body, "expired") {
		t.Errorf("expired token: %d %s", code, body)
	}
}

func labtestKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(labtest.NewSSHKey(t).Authorized))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestHostKeysRace: eight reports race with one token, each with other
// keys; exactly one is recorded (the token is burned under CAS in the same
// transaction), and the record holds that one's keys.
func TestHostKeysRace(t *testing.T) {
	f := startHostKeysServer(t)
	id, spec := deployed(t, f.store, 5)
	type result struct {
		code int
		key  string
	}
	results := make(chan result, 8)
	for range 8 {
		key := inventory.CanonicalKey(labtestKey(t))
		go func() {
			// Not post: t.Fatal belongs to the test's goroutine.
			req, _ := http.NewRequest(http.MethodPost, f.base+wire.HostKeysPath, strings.NewReader(`{"keys":["`+key+`"]}`))
			req.Header.Set("Authorization", "Bearer "+spec.HostKeyToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				results <- result{0, key}
				return
			}
			resp.Body.Close()
			results <- result{resp.StatusCode, key}
		}()
	}
	var won []string
	for range 8 {
		r := <-results
		switch r.code {
		case 200:
			won = append(won, r.key)
		case 403:
		default:
			t.Errorf("racing report: %d", r.code)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d reports recorded with one token, want 1", len(won))
	}
	if m, _ := f.store.Get(context.Background(), id); !slices.Equal(m.HostKeys, won) {
		t.Errorf("recorded %q, want the winner's %q", m.HostKeys, won)
	}
}
