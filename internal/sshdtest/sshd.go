// Package sshdtest runs a real OpenSSH server (Debian's openssh-server) on
// loopback for tests: a fresh host key, one client key authorized for the
// current user, its log read line by line. Tests stop it and start it again
// on the same port to play a machine whose sshd restarts.
//
// Test harness only: production code never imports it.
package sshdtest

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Binary is Debian's sshd; it must be run by its absolute path.
const Binary = "/usr/sbin/sshd"

// Server is a running sshd.
type Server struct {
	// Addr is where it listens, 127.0.0.1:port.
	Addr string
	// Signer is the client key authorized for User.
	Signer ssh.Signer
	// User is the login name (the user running the test).
	User string
	// HostKey is sshd's ed25519 host public key (made fresh per Start).
	HostKey ssh.PublicKey

	t    testing.TB
	dir  string
	port int
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// accepted counts "Accepted publickey" lines since the last Start.
	accepted int
	onAccept []chan struct{}
}

// Start starts sshd on a free loopback port. It skips t under -short and
// fails it when sshd is missing (scripts/setup installs it). Cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real sshd; skipped under -short")
	}
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("sshd: %v (scripts/setup installs openssh-server)", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, dir: t.TempDir(), User: u.Username}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if s.Signer, err = ssh.NewSignerFromKey(priv); err != nil {
		t.Fatal(err)
	}
	host := filepath.Join(s.dir, "host_ed25519")
	if b, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, b)
	}
	hostPub, err := os.ReadFile(host + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if s.HostKey, _, _, _, err = ssh.ParseAuthorizedKey(hostPub); err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(s.dir, "authorized_keys")
	if err := os.WriteFile(auth, ssh.MarshalAuthorizedKey(s.Signer.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd wants its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`ListenAddress 127.0.0.1
HostKey %s
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AuthorizedKeysFile %s
PasswordAuthentication no
KbdInteractiveAuthentication no
LogLevel INFO
`, host, auth)
	if err := os.WriteFile(filepath.Join(s.dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for try := 0; try < 5; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.port = l.Addr().(*net.TCPAddr).Port
		l.Close()
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("sshd: %v", lastErr)
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", s.port)
	t.Cleanup(s.Stop)
	return s
}

// start runs sshd on s.port and waits until it accepts connections.
func (s *Server) start() error {
	cmd := exec.Command(Binary, "-D", "-e", "-f", filepath.Join(s.dir, "sshd_config"), "-p", fmt.Sprint(s.port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	var logMu sync.Mutex
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			log.WriteString(line + "\n")
			logMu.Unlock()
			if strings.Contains(line, "Accepted publickey") {
				s.mu.Lock()
				s.accepted++
				for _, c := range s.onAccept {
					close(c)
				}
				s.onAccept = nil
				s.mu.Unlock()
			}
		}
		cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done, s.accepted = cmd, done, 0
	s.mu.Unlock()
	addr := fmt.Sprintf("127.0.0.1:%d", s.port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			logMu.Lock()
			defer logMu.Unlock()
			return fmt.Errorf("sshd exited: %s", log.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("sshd did not listen on %s within 10s", addr)
}

// Restart starts sshd again on the same port after Stop.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("sshd restart: %v", err)
	}
}

// UseHostCertificate makes sshd present cert (a certificate of HostKey,
// any type or validity: sshd presents what it is given) with its host key,
// as Debian's sshd does with HostCertificate in sshd_config.d, and restarts
// it on the same port.
func (s *Server) UseHostCertificate(cert *ssh.Certificate) {
	s.t.Helper()
	path := filepath.Join(s.dir, "host_ed25519-cert.pub")
	if err := os.WriteFile(path, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		s.t.Fatal(err)
	}
	cfg := filepath.Join(s.dir, "sshd_config")
	b, err := os.ReadFile(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	if !strings.Contains(string(b), "HostCertificate") {
		b = append(b, "HostCertificate "+path+"\n"...)
		if err := os.WriteFile(cfg, b, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	s.Stop()
	s.Restart()
}

// Stop kills the listening sshd (by PID) and waits for it. Sessions already
// open live on in their own processes, as with a real restart. Idempotent.
func (s *Server) Stop() { s.kill() }

func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Accepted is the number of logins accepted since the last (re)start.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// NextAccept returns a channel closed at the next accepted login.
func (s *Server) NextAccept() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan struct{})
	s.onAccept = append(s.onAccept, c)
	return c
}

// ClientConfig logs in as User with Signer, trusting any host key (a test
// server's key is made fresh each run).
func (s *Server) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	}
}
