package netpolicy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/netns"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/mesh"
)

// sh runs a shell command in the host's namespaces, failing the test.
func (h *testHost) sh(t *testing.T, cmd string) string {
	t.Helper()
	var out, errb strings.Builder
	code, err := nsRunner{pid: h.holder}.Run(context.Background(), cmd, nil, &out, &errb)
	if err != nil || code != 0 {
		t.Fatalf("%s: %s: exit %d %v: %s", h.m.ID, cmd, code, err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// TestMeshRevoke: a machine enrolled in the admin mesh (its key made on
// it), two admins with their own keys, the firewall with admin ports on
// the mesh only: SSH answers over the mesh and not over the LAN, the
// machine reaches nothing through the mesh; a revoked admin is cut off
// within 5s while the other still gets through. Userspace WireGuard
// (wireguard-go) in namespaces, each host with a private /run.
func TestMeshRevoke(t *testing.T) {
	netns.Require(t, "wireguard-go", "wg")
	sto := &inventory.Machine{ID: "sto", IP: "10.77.0.21", Tier: "storage"}
	a1 := &inventory.Machine{ID: "alice", IP: "10.77.0.201"}
	a2 := &inventory.Machine{ID: "bob", IP: "10.77.0.202"}
	l := newLAN(t, sto, a1, a2)
	agent := consuldev.T(t)
	store := &mesh.Store{Client: agent.Client(t)}
	ctx := context.Background()
	hs, ha1, ha2 := l.hosts["sto"], l.hosts["alice"], l.hosts["bob"]

	// The machine makes its key and reports the public one.
	pub, err := mesh.Enroll(ctx, nsRunner{pid: hs.holder})
	if err != nil {
		t.Fatal(err)
	}
	stoPeer, err := store.Add(ctx, mesh.Peer{Name: "sto", Kind: mesh.Machine, PublicKey: pub, Endpoint: "10.77.0.21:51820"})
	if err != nil {
		t.Fatal(err)
	}
	// Admins bring public keys; their private keys stay in their namespaces.
	admins := map[string]*testHost{"alice": ha1, "bob": ha2}
	for _, name := range []string{"alice", "bob"} {
		k := admins[name].sh(t, "umask 077; wg genkey > /run/admin.key; wg pubkey < /run/admin.key")
		if _, err := store.Add(ctx, mesh.Peer{Name: name, Kind: mesh.Admin, PublicKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	peers, err := store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Consul holds no private key.
	privs := []string{hs.sh(t, "cat "+mesh.KeyDir+"/private.key"), ha1.sh(t, "cat /run/admin.key"), ha2.sh(t, "cat /run/admin.key")}
	kvs, _, err := agent.Client(t).KV().List("ironrack/vpn/", nil)
	if err != nil || len(kvs) == 0 {
		t.Fatalf("mesh keys in Consul: %v %v", kvs, err)
	}
	for _, kv := range kvs {
		for _, priv := range privs {
			if strings.Contains(string(kv.Value), priv) {
				t.Fatalf("a private key is in Consul at %s", kv.Key)
			}
		}
	}
	if err := mesh.Sync(ctx, nsRunner{pid: hs.holder}, stoPeer, mesh.DefaultMesh, mesh.MachineConfig(mesh.DefaultPort, peers)); err != nil {
		t.Fatal(err)
	}
	addrOf := map[string]string{}
	for _, p := range peers {
		addrOf[p.Name] = p.Address.String()
	}
	for name, h := range admins {
		conf, err := mesh.AdminConfig(name, peers)
		if err != nil {
			t.Fatal(err)
		}
		// What an admin does with wg-quick, by hand: the config without
		// Address (wg setconf's form) plus the private key.
		var setconf []string
		for _, line := range strings.Split(conf, "\n") {
			if strings.HasPrefix(line, "Address") {
				continue
			}
			setconf = append(setconf, line)
			if line == "[Interface]" {
				setconf = append(setconf, "PrivateKey = $(cat /run/admin.key)")
			}
		}
		h.sh(t, fmt.Sprintf("env -i PATH=\"$PATH\" wireguard-go wg0 </dev/null >/dev/null 2>&1\numask 077; cat > /run/wg.conf <<EOF\n%s\nEOF\nwg setconf wg0 /run/wg.conf && ip addr add %s/16 dev wg0 && ip link set wg0 up",
			strings.Join(setconf, "\n"), addrOf[name]))
	}
	meshSSH := net.JoinHostPort(stoPeer.Address.String(), "22")
	hs.listenTCP(t, 22) // the machine's SSH port, on every address
	if !reachSoon(ha1.ns, "tcp", meshSSH) || !reachSoon(ha2.ns, "tcp", meshSSH) {
		t.Fatalf("admins do not reach the machine over the mesh; machine: %s", hs.sh(t, "wg show wg0"))
	}

	// The firewall: admin ports over the mesh only. Mesh before firewall:
	// with no admin in the mesh, the policy is refused.
	src := "admins: [10.77.0.201, 10.77.0.202]\nmesh: {interface: wg0, admin_range: 10.99.0.0/24}\nrules: []\n"
	p, err := Parse("mesh.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Check(Known{Tiers: tierNames, Machines: []*inventory.Machine{sto}}); err == nil || !strings.Contains(err.Error(), "mesh before firewall") {
		t.Fatalf("a mesh policy with no mesh admin: %v", err)
	}
	if _, err := p.Check(Known{Tiers: tierNames, Machines: []*inventory.Machine{sto}, MeshAdmins: 2}); err != nil {
		t.Fatal(err)
	}
	// The test's connection for apply and confirm goes over the mesh from
	// alice, as an admin's SSH would.
	fw := &Firewall{ConfirmWithin: 20 * time.Second, Dial: func(ctx context.Context, m *inventory.Machine) (Runner, error) {
		var conn net.Conn
		err := ha1.ns.Do(func() (err error) {
			conn, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", meshSSH)
			return err
		})
		if err != nil {
			return nil, err
		}
		return nsRunner{pid: hs.holder, close: func() { conn.Close() }}, nil
	}}
	if res, err := fw.Apply(ctx, sto, Render(p, []*inventory.Machine{sto}, sto), true); err != nil || !res.Confirmed {
		t.Fatalf("apply: %+v %v", res, err)
	}
	if reach(ha1.ns, "tcp", "10.77.0.21:22") {
		t.Error("SSH answers over the LAN with the mesh policy")
	}
	if !reachSoon(ha1.ns, "tcp", meshSSH) || !reachSoon(ha2.ns, "tcp", meshSSH) {
		t.Fatal("SSH over the mesh denied by the firewall")
	}
	ha1.listenTCP(t, 7000)
	if reach(hs.ns, "tcp", net.JoinHostPort(addrOf["alice"], "7000")) {
		t.Error("the machine reaches an admin through the mesh")
	}

	// Revoke alice: every machine drops her peer at once.
	start := time.Now()
	_, failed, err := mesh.Revoke(ctx, store, "alice", func(ctx context.Context, p mesh.Peer) (mesh.Runner, error) {
		return nsRunner{pid: l.hosts[p.Name].holder}, nil
	}, 0)
	if err != nil || len(failed) > 0 {
		t.Fatalf("revoke: %v %v", err, failed)
	}
	for reach(ha1.ns, "tcp", meshSSH) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the revoked admin still gets through 5s after the revoke")
		}
	}
	t.Logf("alice cut off %v after the revoke", time.Since(start).Round(time.Millisecond))
	// A fresh handshake from alice fails too: her side starts over.
	ha1.sh(t, "wg setconf wg0 /dev/null; wg setconf wg0 /run/wg.conf")
	reach(ha1.ns, "tcp", meshSSH) // sends a handshake initiation
	time.Sleep(time.Second)
	if hsk := ha1.sh(t, "wg show wg0 latest-handshakes"); !strings.HasSuffix(hsk, "\t0") {
		t.Errorf("alice completed a handshake after the revoke: %q", hsk)
	}
	if !reachSoon(ha2.ns, "tcp", meshSSH) {
		t.Error("bob, not revoked, is cut off")
	}
	if peersNow := hs.sh(t, "wg show wg0 peers"); strings.Count(peersNow, "=") != 1 {
		t.Errorf("machine's peers after the revoke: %q", peersNow)
	}
}
