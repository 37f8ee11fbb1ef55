package bootserver_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"github.com/google/go-cmp/cmp"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/internal/servetest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
	"github.com/ironrack/ironrack/provision/bootserver"
	"github.com/ironrack/ironrack/provision/httpboot"
	"github.com/ironrack/ironrack/provision/ipxe"
)

// writeImage puts a version of image name into data as the images build
// does: root.img, SHA256SUMS and manifest.json naming root.img as the root.
func writeImage(t *testing.T, data, name, version string, root []byte) (sum string) {
	t.Helper()
	dir := images.Dir(data, name, version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(root)
	sum = hex.EncodeToString(s[:])
	man := images.Manifest{Name: name, Version: version, Root: "root.img", Files: []images.File{{Name: "root.img", Size: int64(len(root)), SHA256: sum}}}
	mb, _ := json.Marshal(man)
	for f, b := range map[string][]byte{"root.img": root, "SHA256SUMS": []byte(sum + "  root.img\n"), images.ManifestFile: mb} {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sum
}

type deployFixture struct {
	base  string
	store *inventory.Store
	inv   *bootserver.Backend
}

func startDeployServer(t *testing.T, addr string) deployFixture {
	t.Helper()
	inv, st := testInventory(t)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	inv.BaseURL = base
	srv, err := httpboot.New(httpboot.Config{
		Listener: ln, ImageDir: images.Root(inv.DataDir), Env: ipxe.Env{BaseURL: base},
		Machines: inv, Boots: inv, Tokens: inv, Reports: inv, Deploys: inv,
	})
	if err != nil {
		t.Fatal(err)
	}
	servetest.Run(t, 10*time.Second, srv.Serve)
	return deployFixture{base: base, store: st, inv: inv}
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// deployingMachine commissions a machine, claims it for alice and starts a
// deploy of debian/1, and issues it a boot token (as its agent's script
// would carry).
func deployingMachine(t *testing.T, st *inventory.Store, mac, serial string) (string, *inventory.DeploySpec, string) {
	t.Helper()
	ctx := context.Background()
	m, _, err := st.Enlist(ctx, inventory.Sighting{Serial: serial, MACs: []string{mac}, Source: "pxe"}, inventory.Change{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commission(ctx, m.ID, inventory.Facts{Serial: serial, CPUCores: 1, MemGB: 1, NICs: []inventory.NIC{{MAC: mac}}}, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Claim(ctx, m.ID, "alice", "", inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	_, spec, err := st.StartDeploy(ctx, m.ID, inventory.DeploySpec{Image: "debian", ImageVersion: "1", Hostname: "web-7",
		SSHKeys: []string{labtest.NewSSHKey(t).Authorized}, Role: "web", UserData: "#cloud-config\nruncmd: [touch /x]\n",
		ConsulJoin: "192.0.2.1", Services: []inventory.DeployService{{Name: "ssh", Port: 22}, {Name: "api", Port: 8080, Check: "http:/healthz"}}}, inventory.Change{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := st.IssueBootToken(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	return m.ID, spec, tok
}

// TestDeployEndpoints exercises the boot server's deploy side with the real
// adapter over a real Consul: the agent's instructions (token checked, 409
// when there is nothing to deploy), the image's checksum headers (from
// SHA256SUMS, also on a Range request), the NoCloud seed (unknown token and
// unknown file 404), a garbage report refused with 400 and the record
// untouched, and the deploy result events.
func TestDeployEndpoints(t *testing.T) {
	f := startDeployServer(t, "127.0.31.21:18080")
	ctx := context.Background()
	root := []byte(strings.Repeat("ironrack root image\n", 5000))
	sum := writeImage(t, f.inv.DataDir, "debian", "1", root)
	id, spec, tok := deployingMachine(t, f.store, "52:54:00:31:00:01", "DEP-EP-1")

	// Instructions.
	if resp, _ := get(t, f.base+"/api/v1/deploy"); resp.StatusCode != 401 {
		t.Errorf("no token: %d, want 401", resp.StatusCode)
	}
	if resp, _ := get(t, f.base+"/api/v1/deploy", "Authorization", "Bearer "+id+"."+strings.Repeat("0", 48)); resp.StatusCode != 401 {
		t.Errorf("wrong token: %d, want 401", resp.StatusCode)
	}
	resp, body := get(t, f.base+"/api/v1/deploy", "Authorization", "Bearer "+tok)
	if resp.StatusCode != 200 {
		t.Fatalf("instructions: %d %s", resp.StatusCode, body)
	}
	var in wire.Instructions
	if err := json.Unmarshal([]byte(body), &in); err != nil {
		t.Fatal(err)
	}
	want := wire.Instructions{Image: "debian", Version: "1", URL: "/images/debian/1/root.img", SHA256: sum, Size: int64(len(root)),
		Disk: wire.DiskRule{Rule: "first-fit", MinBytes: int64(len(root))}}
	if d := cmp.Diff(want, in); d != "" {
		t.Errorf("instructions (-want +got):\n%s", d)
	}

	// The image file carries its sum from SHA256SUMS, whole and by range.
	raw, _ := hex.DecodeString(sum)
	for _, hdr := range [][]string{nil, {"Range", "bytes=100-199"}} {
		resp, body := get(t, f.base+in.URL, hdr...)
		if resp.Header.Get("X-Checksum-Sha256") != sum || resp.Header.Get("Digest") != "sha-256="+base64.StdEncoding.EncodeToString(raw) {
			t.Errorf("%v: checksum headers %q %q, want %s", hdr, resp.Header.Get("X-Checksum-Sha256"), resp.Header.Get("Digest"), sum)
		}
		if hdr != nil && (resp.StatusCode != 206 || body != string(root[100:200])) {
			t.Errorf("range: %d %q", resp.StatusCode, body)
		}
	}
	// A file the sums do not list gets no header.
	os.WriteFile(filepath.Join(images.Dir(f.inv.DataDir, "debian", "1"), "extra"), []byte("x"), 0o644)
	if resp, _ := get(t, f.base+"/images/debian/1/extra"); resp.StatusCode != 200 || resp.Header.Get("X-Checksum-Sha256") != "" {
		t.Errorf("unlisted file: %d, header %q", resp.StatusCode, resp.Header.Get("X-Checksum-Sha256"))
	}

	// NoCloud.
	resp, body = get(t, f.base+"/nocloud/"+spec.NoCloudToken+"/meta-data")
	if resp.StatusCode != 200 || !strings.Contains(body, `local-hostname: "web-7"`) || !strings.Contains(body, `instance-id: "`+id) {
		t.Errorf("meta-data: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, f.base+"/nocloud/"+spec.NoCloudToken+"/user-data")
	stored, err := f.store.Deploy(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// The agent joins the inventory's datacenter (none set by hand).
	_, wantUser, err := images.NoCloud(provision.NoCloudSeed(id, stored, inventory.AgentSecrets{Datacenter: "dc1"}, f.base))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != string(wantUser) || !strings.Contains(body, "multipart/mixed") {
		t.Errorf("user-data: %d\n%s\nwant images.NoCloud's:\n%s", resp.StatusCode, body, wantUser)
	}
	// The spec's services reach the OS's Consul agent config (in that
	// user-data), with checks run on the machine itself.
	files, err := provision.NoCloudSeed(id, stored, inventory.AgentSecrets{}, f.base).ConsulFiles()
	if err != nil {
		t.Fatal(err)
	}
	svcs := string(files[images.ConsulServicesFile])
	for _, want := range []string{`"name": "ssh"`, `"tcp": "127.0.0.1:22"`, `"http": "http://127.0.0.1:8080/healthz"`, `"interval": "10s"`} {
		if !strings.Contains(svcs, want) {
			t.Errorf("%s lacks %s:\n%s", images.ConsulServicesFile, want, svcs)
		}
	}
	// Once the operator has set the cluster's agent secrets, user-data
	// carries them (the boot server opens them with its key file) and
	// meta-data still does not.
	secrets := inventory.AgentSecrets{GossipKey: "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=", Token: "2f1c3e8a-6a7b-4c1d-9e2f-0a1b2c3d4e5f",
		Datacenter: "fra1"}
	if err := f.store.SetAgentSecrets(ctx, secrets); err != nil {
		t.Fatal(err)
	}
	_, wantSecured, err := images.NoCloud(provision.NoCloudSeed(id, stored, secrets, f.base))
	if err != nil {
		t.Fatal(err)
	}
	if string(wantSecured) == string(wantUser) {
		t.Fatal("the secrets do not change the rendered user-data")
	}
	if resp, body := get(t, f.base+"/nocloud/"+spec.NoCloudToken+"/user-data"); resp.StatusCode != 200 || body != string(wantSecured) {
		t.Errorf("user-data with agent secrets: %d\n%s\nwant:\n%s", resp.StatusCode, body, wantSecured)
	}
	if resp, body := get(t, f.base+"/nocloud/"+spec.NoCloudToken+"/meta-data"); resp.StatusCode != 200 || strings.Contains(body, secrets.Token) || strings.Contains(body, secrets.GossipKey) {
		t.Errorf("meta-data: %d %q", resp.StatusCode, body)
	}
	if resp, body := get(t, f.base+"/nocloud/"+spec.NoCloudToken+"/vendor-data"); resp.StatusCode != 200 || body != "" {
		t.Errorf("vendor-data: %d %q", resp.StatusCode, body)
	}
	for _, p := range []string{
		"/nocloud/" + id + "." + strings.Repeat("1", 48) + "/meta-data",
		"/nocloud/garbage/meta-data",
		"/nocloud/" + spec.NoCloudToken + "/secret",
		"/nocloud/" + spec.NoCloudToken + "/..%2f..%2fmachines",
		"/nocloud/" + spec.NoCloudToken + "/",
	} {
		if resp, body := get(t, f.base+p); resp.StatusCode != 404 {
			t.Errorf("%s: %d %q, want 404", p, resp.StatusCode, body)
		}
	}

	// A garbage report: 400 with the reason, and the record untouched.
	before, err := f.store.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for body, reason := range map[string]string{
		`{"kind":"event","event":{"phase":"deploy","status":"done"`:                 "decode report",
		`{"kind":"event","event":{"phase":"deploy","status":"exploded"}}`:           "status \"exploded\"",
		`{"kind":"event","event":{"phase":"deploy","status":"done","percent":400}}`: "percent 400",
		"\x00\x01garbage": "decode report",
		`{"kind":"event","event":{"phase":"deploy","status":"done"}} {"kind":"x"}`:       "trailing data",
		`{"kind":"event","event":{"phase":"deploy","status":"done","message":"\u0007"}}`: "control characters",
	} {
		code, msg := post(t, f.base+"/api/v1/report", tok, body)
		if code != 400 || !strings.Contains(msg, reason) {
			t.Errorf("report %q: %d %q, want 400 naming %q", body, code, msg, reason)
		}
	}
	after, _ := f.store.History(ctx, id)
	if m, _ := f.store.Get(ctx, id); len(after) != len(before) || m.State != inventory.StateDeploying {
		t.Fatalf("garbage reports changed the machine: %d → %d history entries, state %s", len(before), len(after), m.State)
	}

	// Progress is noted; done ends the deploy; a late failure changes nothing.
	for _, b := range []string{
		`{"kind":"event","event":{"phase":"deploy","status":"progress","percent":40,"message":"vda"}}`,
		`{"kind":"event","event":{"phase":"deploy","status":"done","message":"verified"}}`,
		`{"kind":"event","event":{"phase":"deploy","status":"failed","message":"verify: late"}}`,
	} {
		if code, msg := post(t, f.base+"/api/v1/report", tok, b); code != 204 {
			t.Fatalf("report %s: %d %s", b, code, msg)
		}
	}
	m, _ := f.store.Get(ctx, id)
	h := strings.Join(historyLines(t, f.store, id), "\n")
	if m.State != inventory.StateDeployed || !strings.Contains(h, "agent deploy: progress 40%: vda") || !strings.Contains(h, "(ignored:") {
		t.Errorf("state %s; history:\n%s", m.State, h)
	}
	// Now deployed, there is nothing to deploy; the OS boot carries the seed.
	if resp, _ := get(t, f.base+"/api/v1/deploy", "Authorization", "Bearer "+tok); resp.StatusCode != 409 {
		t.Errorf("instructions of a deployed machine: %d, want 409", resp.StatusCode)
	}
	os.WriteFile(filepath.Join(images.Dir(f.inv.DataDir, "debian", "1"), "vmlinuz"), []byte("kernel"), 0o644)
	_, script := get(t, f.base+"/boot.ipxe?mac=52:54:00:31:00:01")
	if !strings.Contains(script, "/images/debian/1/vmlinuz") || !strings.Contains(script, "ds=nocloud-net;s="+f.base+"/nocloud/"+spec.NoCloudToken+"/") {
		t.Errorf("deployed script lacks the image kernel or the NoCloud seed:\n%s", script)
	}

	// Release: wipe done → ready, and the seed is gone.
	if _, err := f.store.StartRelease(ctx, id, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	if code, msg := post(t, f.base+"/api/v1/report", tok, `{"kind":"event","event":{"phase":"wipe","status":"done","message":"vda"}}`); code != 204 {
		t.Fatalf("wipe done: %d %s", code, msg)
	}
	if m, _ := f.store.Get(ctx, id); m.State != inventory.StateReady || m.Owner != "" {
		t.Errorf("after wipe: %s owner %q", m.State, m.Owner)
	}
	if resp, _ := get(t, f.base+"/nocloud/"+spec.NoCloudToken+"/meta-data"); resp.StatusCode != 404 {
		t.Errorf("seed after release: %d, want 404", resp.StatusCode)
	}
}

func historyLines(t *testing.T, st *inventory.Store, id string) []string {
	t.Helper()
	h, err := st.History(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range h {
		out = append(out, e.What+": "+e.Why)
	}
	return out
}
