package remote_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/sshhosts"
	"github.com/ironrack/ironrack/playbooks/remote"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func options(t *testing.T, c *sshhosts.Cluster) remote.Options {
	auth, err := remote.KeyFileAuth(c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return remote.Options{HostKeyCallback: c.HostKeyCallback(), Auth: []ssh.AuthMethod{auth},
		ConnectTimeout: 5 * time.Second, KillGrace: time.Second}
}

func TestRemote(t *testing.T) {
	c := sshhosts.Start(t, 2)
	opts := options(t, c)
	h := c.Hosts[0]
	ctx := context.Background()
	cl, err := remote.Dial(ctx, remote.Target{ID: "m-01", Addr: h.Addr}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	t.Run("exit status, stdin, private mounts", func(t *testing.T) {
		var out, errb bytes.Buffer
		exit, err := cl.Run(ctx, "cat /srv/ident; cat; echo oops >&2; exit 3", strings.NewReader("from stdin\n"), &out, &errb)
		if err != nil || exit != 3 {
			t.Fatalf("exit %d, err %v", exit, err)
		}
		if got, want := out.String(), h.Name+"\nfrom stdin\n"; got != want {
			t.Errorf("stdout %q, want %q", got, want)
		}
		if errb.String() != "oops\n" {
			t.Errorf("stderr %q", errb.String())
		}
		// /etc/ssh and /run are the host's own, not the test machine's.
		out.Reset()
		if _, err := cl.Run(ctx, "ls /etc/ssh; test -d /run/sshd && ! test -e /run/netns && echo private-run", nil, &out, nil); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "authorized_keys") || !strings.Contains(out.String(), "private-run") {
			t.Errorf("host tree not private: %q", out.String())
		}
	})

	t.Run("HostKeyAlgorithms: the host is asked only for those types", func(t *testing.T) {
		o := opts
		var asked string
		o.HostKeyAlgorithms = func(addr string) []string { asked = addr; return []string{ssh.KeyAlgoECDSA256} }
		if cl2, err := remote.Dial(ctx, remote.Target{ID: "m-01", Addr: h.Addr}, o); err == nil || !strings.Contains(err.Error(), "no common algorithm") {
			if cl2 != nil {
				cl2.Close()
			}
			t.Fatalf("only ecdsa asked of an ed25519 host: %v", err)
		}
		if asked != h.Addr {
			t.Errorf("HostKeyAlgorithms asked for %q, want %q", asked, h.Addr)
		}
		o.HostKeyAlgorithms = func(string) []string { return []string{ssh.KeyAlgoED25519} }
		cl2, err := remote.Dial(ctx, remote.Target{ID: "m-01", Addr: h.Addr}, o)
		if err != nil {
			t.Fatal(err)
		}
		cl2.Close()
	})

	t.Run("a signal is named", func(t *testing.T) {
		exit, err := cl.Run(ctx, "kill -KILL $$", nil, nil, nil)
		var se *remote.SignalError
		if !errors.As(err, &se) || se.Signal != "KILL" || exit != -1 || !strings.Contains(err.Error(), "SIGKILL") {
			t.Fatalf("exit %d, err %v: want a SignalError naming KILL", exit, err)
		}
	})

	t.Run("timeout ends the remote command", func(t *testing.T) {
		// The marker is in both the shell's and sleep's command lines.
		marker := fmt.Sprintf("1000.%d", time.Now().UnixNano()%1e9)
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			deadline := time.Now().Add(5 * time.Second)
			for len(h.Procs(marker)) == 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
		}()
		exit, err := cl.Run(tctx, "sleep "+marker+"; touch /srv/not-reached", nil, nil, nil)
		<-done
		if !errors.Is(err, context.DeadlineExceeded) || exit != -1 {
			t.Fatalf("exit %d, err %v: want a deadline error", exit, err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("Run took %v after a 1s timeout", d)
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(h.Procs(marker)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("remote processes %v still run on %s after the timeout (err %v); log: %s", h.Procs(marker), h.Name, err, h.Log())
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The shell went with its command: it did not carry on.
		time.Sleep(200 * time.Millisecond)
		if _, err := os.Stat(filepath.Join(h.Dir, "srv", "not-reached")); err == nil {
			t.Error("the remote shell ran on after its command was ended")
		}
		// The connection is still usable.
		if exit, err := cl.Run(ctx, "true", nil, nil, nil); err != nil || exit != 0 {
			t.Fatalf("after timeout: exit %d, err %v", exit, err)
		}
	})

	t.Run("mismatched host key refused naming machine and both fingerprints", func(t *testing.T) {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		wrong, _ := ssh.NewPublicKey(pub)
		kh := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(h.Addr)}, wrong)+"\n"), 0o600)
		cb, err := knownhosts.New(kh)
		if err != nil {
			t.Fatal(err)
		}
		o := opts
		o.HostKeyCallback = cb
		_, err = remote.Dial(ctx, remote.Target{ID: "m-01", Addr: h.Addr}, o)
		var mm *remote.HostKeyMismatch
		if !errors.As(err, &mm) {
			t.Fatalf("err %v: want a HostKeyMismatch", err)
		}
		for _, want := range []string{"m-01", ssh.FingerprintSHA256(h.HostKey), ssh.FingerprintSHA256(wrong), kh + ":1"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		}
	})

	t.Run("unknown host refused", func(t *testing.T) {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(kh, nil, 0o600)
		cb, _ := knownhosts.New(kh)
		o := opts
		o.HostKeyCallback = cb
		_, err := remote.Dial(ctx, remote.Target{ID: "m-02", Addr: c.Hosts[1].Addr}, o)
		if err == nil || !strings.Contains(err.Error(), "no host key recorded") || !strings.Contains(err.Error(), "m-02") {
			t.Fatalf("err %v", err)
		}
	})

	t.Run("login through a real ssh-agent", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "agent.sock")
		agent := exec.Command("ssh-agent", "-D", "-a", sock)
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { agent.Process.Kill(); agent.Wait() }()
		for i := 0; i < 100; i++ {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, _, err := remote.AgentAuth(sock); err == nil || !strings.Contains(err.Error(), "holds no key") {
			t.Errorf("empty agent: err %v", err)
		}
		add := exec.Command("ssh-add", c.KeyFile)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v: %s", err, out)
		}
		auth, closer, err := remote.AgentAuth(sock)
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		o := opts
		o.Auth = []ssh.AuthMethod{auth}
		ac, err := remote.Dial(ctx, remote.Target{ID: "m-01", Addr: h.Addr}, o)
		if err != nil {
			t.Fatal(err)
		}
		defer ac.Close()
		if exit, err := ac.Run(ctx, "true", nil, nil, nil); err != nil || exit != 0 {
			t.Fatalf("exit %d, err %v", exit, err)
		}
	})

	t.Run("a lost connection is an error, not an exit status", func(t *testing.T) {
		lc, err := remote.Dial(ctx, remote.Target{ID: "m-01", Addr: h.Addr}, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer lc.Close()
		// The shell's parent is sshd's process for this connection.
		exit, err := lc.Run(ctx, "kill -KILL $PPID; sleep 5", nil, nil, nil)
		if err == nil || exit != -1 || !strings.Contains(err.Error(), "m-01") {
			t.Fatalf("exit %d, err %v: want an error naming the machine", exit, err)
		}
	})

	t.Run("a machine off the network mid-command: keepalives end the wait", func(t *testing.T) {
		o := opts
		o.KeepAlive = 200 * time.Millisecond
		h2 := c.Hosts[1]
		kc, err := remote.Dial(ctx, remote.Target{ID: "m-02", Addr: h2.Addr}, o)
		if err != nil {
			t.Fatal(err)
		}
		defer kc.Close()
		time.AfterFunc(300*time.Millisecond, func() { h2.SetUnreachable(true) })
		defer h2.SetUnreachable(false)
		start := time.Now()
		exit, err := kc.Run(ctx, "sleep 20", nil, nil, nil)
		if err == nil || exit != -1 || !strings.Contains(err.Error(), "m-02: connection lost") || time.Since(start) > 5*time.Second {
			t.Fatalf("exit %d, err %v after %v: want connection lost within a few keepalive periods", exit, err, time.Since(start))
		}
	})

	t.Run("no callback, no login", func(t *testing.T) {
		o := opts
		o.HostKeyCallback = nil
		if _, err := remote.Dial(ctx, remote.Target{ID: "m-01", Addr: h.Addr}, o); err == nil {
			t.Fatal("Dial without a host key callback succeeded")
		}
	})

	t.Run("unreachable times out at the connect timeout", func(t *testing.T) {
		c.Hosts[1].SetUnreachable(true)
		defer c.Hosts[1].SetUnreachable(false)
		o := opts
		o.ConnectTimeout = 500 * time.Millisecond
		start := time.Now()
		_, err := remote.Dial(ctx, remote.Target{ID: "m-02", Addr: c.Hosts[1].Addr}, o)
		if err == nil || !strings.Contains(err.Error(), "m-02") || time.Since(start) > 3*time.Second {
			t.Fatalf("err %v after %v", err, time.Since(start))
		}
	})
}
