package provision_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/labtest"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
)

// debianImage builds the Debian OS image into the lab and registers it
// (labtest.DebianImage).
func debianImage(t *testing.T, l *labtest.Lab) images.Manifest {
	t.Helper()
	return l.DebianImage()
}

// sshRun runs cmd on addr as root with key, dialing from inside the lab's
// namespace, retrying the dial until deadline (the machine is booting).
func sshRun(t *testing.T, l *labtest.Lab, addr string, key labtest.SSHKey, deadline time.Time, cmds ...string) ([]string, error) {
	t.Helper()
	cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(key.Signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	var client *ssh.Client
	var last error
	for {
		var conn net.Conn
		last = l.NS.Do(func() error {
			var err error
			conn, err = net.DialTimeout("tcp", net.JoinHostPort(addr, "22"), 5*time.Second)
			return err
		})
		if last == nil {
			c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
			if err == nil {
				client = ssh.NewClient(c, chans, reqs)
				break
			}
			conn.Close()
			last = err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("ssh root@%s: %w", addr, last)
		}
		time.Sleep(2 * time.Second)
	}
	defer client.Close()
	var out []string
	for _, cmd := range cmds {
		s, err := client.NewSession()
		if err != nil {
			return out, err
		}
		b, err := s.CombinedOutput(cmd)
		s.Close()
		if err != nil {
			return out, fmt.Errorf("ssh %q: %w: %s", cmd, err, b)
		}
		out = append(out, strings.TrimSpace(string(b)))
	}
	return out, nil
}

// TestDeployDebianQEMU deploys the real Debian image end to end through
// the workflow `ironrack deploy` runs: an unknown TCG machine is
// discovered and commissioned (ready), gets an ipmi_sim BMC, is deployed
// (BMC power-on, the agent streams and verifies root.img, reboots); it boots
// Debian with its root on the local disk, cloud-init takes the host name and
// root's SSH key from the boot server's NoCloud seed, and sshd accepts that
// key (golang.org/x/crypto/ssh from inside the namespace). With
// IRONRACK_BENCH_STREAM set, plain HTTP downloads of the same root.img are
// timed in the deployed OS against the agent's streaming rate (to
// /dev/null, into sha256sum, onto the disk). Release (allow-reboot: it runs) wipes it: the
// disk image file read from the host has zero first and last MiB, and the
// machine is ready.
func TestDeployDebianQEMU(t *testing.T) {
	l := labtest.New(t, labtest.Config{Tools: []string{"debootstrap", "mkfs.ext4", "ipmi_sim"}})
	ctx := context.Background()
	man := debianImage(t, l)
	key := labtest.NewSSHKey(t)

	v := l.Start(labtest.VMSpec{MAC: "52:54:00:31:00:20", Serial: "DEBIAN-1", MemMiB: 1024, CPUs: 1, DiskGB: 2, Reboot: true})
	m, err := l.WaitState(v, inventory.StateReady, time.Now().Add(4*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !v.WaitOff(time.Now().Add(time.Minute)) {
		t.Fatalf("discovered VM did not power off")
	}
	l.AttachBMC(v, netip.MustParseAddr("127.0.31.42"), m.ID)

	d := deployer(l)
	var evs events
	res := d.Deploy(ctx, []string{m.ID}, provision.DeployRequest{Owner: "test", Image: "debian", // the only version: resolved
		Hostnames: map[string]string{m.ID: "deb-1"}, SSHKeys: []string{key.Authorized}, Role: "web", Timeout: 10 * time.Minute, Progress: evs.add})
	t.Logf("deploy events:\n%s", evs.String())
	if !res[0].OK() || res[0].State != inventory.StateDeployed {
		t.Fatalf("deploy: %+v\nconsole:\n%s", res, labtest.Tail(v.Console(), 40))
	}
	m, _ = l.Store.Get(ctx, m.ID)
	rate := ""
	for _, h := range l.History(m.ID) {
		if r := rateRE.FindStringSubmatch(h); r != nil {
			rate = r[1]
		}
	}

	// A plain HTTP download of the same file in the deployed OS, for the
	// streaming rate's baseline; then what each of the agent's extra costs
	// (sha256, a disk write) adds to a download, on the first 256 MiB.
	get := func(limit, sink string) string {
		req := fmt.Sprintf(`exec 3<>/dev/tcp/%s/8080; printf 'GET /images/debian/%s/root.img HTTP/1.0\r\nHost: %s\r\n\r\n' >&3`, labtest.ServerIP, man.Version, labtest.ServerIP)
		body := "cat <&3"
		if limit != "" {
			body += " | head -c " + limit
		}
		// The pipeline ends when its sink has taken every byte. Bytes: the
		// whole file (its HTTP header aside), or the limit.
		script := fmt.Sprintf(`s=$(date +%%s%%N); %s; %s | %s; e=$(date +%%s%%N); echo $(( (e-s)/1000000 ))`, req, body, sink)
		return "bash -c '" + strings.ReplaceAll(script, "'", `'\''`) + "'"
	}
	cmds := []string{"hostname", "cat /root/.ssh/authorized_keys", "cloud-init status --wait || true", "findmnt -n -o SOURCE /"}
	bench := os.Getenv("IRONRACK_BENCH_STREAM") != ""
	if bench {
		cmds = append(cmds, get("", "cat >/dev/null"), get("256M", "cat >/dev/null"), get("256M", "sha256sum >/dev/null"),
			get("256M", "dd of=/var/tmp/dl bs=4M conv=fsync status=none"), "rm -f /var/tmp/dl")
	}
	out, err := sshRun(t, l, m.IP, key, time.Now().Add(5*time.Minute), cmds...)
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, labtest.Tail(v.Console(), 40))
	}
	if out[0] != "deb-1" {
		t.Errorf("hostname %q, want deb-1 (from cloud-init)", out[0])
	}
	if !strings.Contains(out[1], strings.Fields(key.Authorized)[1]) {
		t.Errorf("root's authorized_keys lacks the deploy's key:\n%s", out[1])
	}
	if !strings.Contains(out[2], "done") {
		t.Errorf("cloud-init status: %q", out[2])
	}
	if out[3] != "/dev/vda" {
		t.Errorf("root is %q, want the local disk /dev/vda", out[3])
	}
	whole := int64(0)
	for _, f := range man.Files {
		if f.Name == man.Root {
			whole = f.Size
		}
	}
	mibs := func(s string, n int64) string {
		var ms int64
		fmt.Sscan(s, &ms)
		if n <= 0 || ms <= 0 {
			return "? (" + s + ")"
		}
		return fmt.Sprintf("%.1f MiB/s (%d bytes in %d ms)", float64(n)/(1<<20)/(float64(ms)/1000), n, ms)
	}
	if bench {
		t.Logf("BENCH streaming (load %s): agent wrote root.img at %s MiB/s (sha256 while writing, to disk); in the deployed OS, bash /dev/tcp downloads of it: whole to /dev/null %s; 256 MiB to /dev/null %s, | sha256sum %s, | dd to disk with fsync %s",
			loadavg(), rate, mibs(out[4], whole), mibs(out[5], 256<<20), mibs(out[6], 256<<20), mibs(out[7], 256<<20))
	}

	res = d.Release(ctx, []string{m.ID}, provision.ReleaseRequest{AllowReboot: true, Timeout: 6 * time.Minute})
	if !res[0].OK() || res[0].State != inventory.StateReady {
		t.Fatalf("release: %+v\nconsole:\n%s", res, labtest.Tail(v.Console(), 30))
	}
	checkWiped(t, v)
	if _, err := l.Store.Deploy(ctx, m.ID); err == nil {
		t.Error("the deploy spec outlived the release")
	}
}
