// Package remote is ironrack's SSH client: one connection to one machine
// (Dial), commands run through the login shell as ssh(1) runs them (Run),
// strict host-key checking through a callback the caller supplies.
//
// A command that its context ends (timeout, cancel, Ctrl-C) is ended on the
// machine too, not only its session, TERM first and KILL after a grace
// period. Closing a session without a PTY leaves its processes running, and
// OpenSSH's sshd refuses the "signal" channel request (RFC 4254 6.9) for
// root logins ("session signalling requires privilege separation": a root
// session runs without the post-auth privilege separation child). So Run
// marks each command: it runs `IRONRACK_RUN=<random>; export IRONRACK_RUN;`
// before it, and on cancel a second session finds the processes carrying
// that mark in /proc/PID/environ and signals their process groups (which
// hold the shell: a non-interactive shell has no job control). It sends the
// signal request as well, which is enough for other users. A command that
// leaves its process group and clears its environment escapes this, as
// daemons escape ssh(1). The prefix needs a POSIX-style login shell (sh,
// dash, bash, zsh, ksh).
package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Target is one machine to log in to.
type Target struct {
	// ID is the inventory machine ID; errors name it.
	ID string
	// Addr is host:port.
	Addr string
	// User is the login name. If "", root.
	User string
}

func (t Target) user() string {
	if t.User == "" {
		return "root"
	}
	return t.User
}

// Options say how to log in. HostKeyCallback and Auth are required.
type Options struct {
	// HostKeyCallback checks the machine's host key; Dial refuses to run
	// without one (there is no "trust anything" mode). A *knownhosts.KeyError
	// it returns for a changed key becomes a *HostKeyMismatch.
	HostKeyCallback ssh.HostKeyCallback
	// Auth is how to authenticate: see KeyFileAuth and AgentAuth.
	Auth []ssh.AuthMethod
	// HostKeyAlgorithms, when set, gives the host key algorithms to ask
	// the host at addr for (hostkeys.Trust.HostKeyAlgorithms: only the
	// recorded key types); nil or an empty answer: the defaults.
	HostKeyAlgorithms func(addr string) []string
	// ConnectTimeout bounds the TCP connect and the SSH handshake. If 0, 10s.
	ConnectTimeout time.Duration
	// KillGrace is how long Run waits after sending TERM to a command whose
	// context ended before it sends KILL. If 0, 2s.
	KillGrace time.Duration
	// KeepAlive is how often the connection is probed while open
	// (keepalive@openssh.com); a probe unanswered for 3 periods closes the
	// connection, so a command on a machine that dropped off the network
	// ends with a "connection lost" error instead of hanging. If 0, 15s;
	// negative: no probes.
	KeepAlive time.Duration
	// DialContext opens the TCP connection. If nil, a net.Dialer's.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client is one SSH connection to one machine. It is safe for concurrent
// use: each Run opens its own session.
type Client struct {
	Target Target
	conn   *ssh.Client
	opts   Options
	// closed ends the keepalive goroutine; lost is set when it closed the
	// connection.
	closed    chan struct{}
	closeOnce sync.Once
	lost      atomic.Bool
}

// HostKeyMismatch is Dial's error when the machine offers a key other than
// the one recorded for it.
type HostKeyMismatch struct {
	Target Target
	// Offered is the fingerprint (SHA256:...) of the key the host offered.
	Offered string
	// Known are the fingerprints recorded for the host, with where they are
	// recorded (FILE:LINE) when known.
	Known []string
}

func (e *HostKeyMismatch) Error() string {
	return fmt.Sprintf("machine %s (%s): host key mismatch: offered %s, recorded %s; refusing to log in (if the machine was reinstalled, update its recorded host keys)",
		e.Target.ID, e.Target.Addr, e.Offered, strings.Join(e.Known, ", "))
}

// Dial connects to t and logs in. ctx bounds it too.
func Dial(ctx context.Context, t Target, o Options) (*Client, error) {
	if o.HostKeyCallback == nil {
		return nil, fmt.Errorf("machine %s (%s): no host key callback: ironrack never logs in without checking the host key", t.ID, t.Addr)
	}
	if len(o.Auth) == 0 {
		return nil, fmt.Errorf("machine %s (%s): no SSH authentication method (give a key file or run an ssh-agent)", t.ID, t.Addr)
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := o.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(dctx, "tcp", t.Addr)
	if err != nil {
		return nil, fmt.Errorf("machine %s: connect %s: %w", t.ID, t.Addr, cause(dctx, err))
	}
	var mismatch *HostKeyMismatch
	var algos []string
	if o.HostKeyAlgorithms != nil {
		algos = o.HostKeyAlgorithms(t.Addr)
	}
	cfg := &ssh.ClientConfig{
		User:              t.user(),
		Auth:              o.Auth,
		HostKeyAlgorithms: algos,
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := o.HostKeyCallback(hostname, remote, key)
			var ke *knownhosts.KeyError
			if errors.As(err, &ke) && len(ke.Want) > 0 {
				mismatch = &HostKeyMismatch{Target: t, Offered: ssh.FingerprintSHA256(key)}
				for _, k := range ke.Want {
					s := ssh.FingerprintSHA256(k.Key)
					if k.Filename != "" {
						s += fmt.Sprintf(" (%s:%d)", k.Filename, k.Line)
					}
					mismatch.Known = append(mismatch.Known, s)
				}
				return mismatch
			}
			if errors.As(err, &ke) {
				return fmt.Errorf("no host key recorded for %s (offered %s %s)", hostname, key.Type(), ssh.FingerprintSHA256(key))
			}
			return err
		},
	}
	// The handshake has no context: a deadline on the connection bounds it,
	// and ctx's end closes the connection.
	deadline, _ := dctx.Deadline()
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(dctx, func() { nc.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(nc, t.Addr, cfg)
	stopped := stop()
	if err != nil {
		nc.Close()
		if mismatch != nil {
			return nil, mismatch
		}
		if !stopped {
			err = cause(dctx, err)
		}
		return nil, fmt.Errorf("machine %s: ssh %s@%s: %w", t.ID, t.user(), t.Addr, err)
	}
	nc.SetDeadline(time.Time{})
	c := &Client{Target: t, conn: ssh.NewClient(sc, chans, reqs), opts: o, closed: make(chan struct{})}
	if every := o.KeepAlive; every >= 0 {
		if every == 0 {
			every = 15 * time.Second
		}
		go c.keepAlive(every)
	}
	return c, nil
}

// keepAlive probes the connection every period until Close; a probe
// unanswered for 3 periods closes the connection.
func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case <-c.closed:
			return
		case err := <-reply:
			if err != nil {
				return // the connection is gone; Run reports it
			}
		case <-time.After(3 * every):
			c.lost.Store(true)
			c.conn.Close()
			return
		}
	}
}

// cause prefers ctx's reason to the I/O error it caused.
func cause(ctx context.Context, err error) error {
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("timed out: %w", context.DeadlineExceeded)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Close closes the connection.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.conn.Close()
}

// SignalError is Run's error for a command that a signal ended.
type SignalError struct {
	Signal string // without SIG, as the protocol names it: KILL, TERM, ...
	Msg    string
}

func (e *SignalError) Error() string {
	s := "command killed by signal SIG" + e.Signal
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// Run runs cmd on the host (through the login shell as ssh does), feeding
// stdin (may be nil), and returns the command's exit status. err is non-nil
// only when the command could not run or did not finish: connection lost, ctx
// done (timeout/cancel), which also ends the remote command and its process
// group (TERM, then KILL after Options.KillGrace). A command killed by a
// signal reports a *SignalError naming the signal; exit is then -1.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (exit int, err error) {
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	s, err := c.conn.NewSession()
	if err != nil {
		return -1, fmt.Errorf("machine %s: open session: %w", c.Target.ID, err)
	}
	defer s.Close()
	if stdin != nil {
		s.Stdin = stdin
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	s.Stdout, s.Stderr = stdout, stderr
	mark, err := newMark()
	if err != nil {
		return -1, err
	}
	if err := s.Start("IRONRACK_RUN=" + mark + "; export IRONRACK_RUN; " + cmd); err != nil {
		if c.lost.Load() {
			return -1, fmt.Errorf("machine %s: connection lost: no answer to keepalives", c.Target.ID)
		}
		return -1, fmt.Errorf("machine %s: start command: %w", c.Target.ID, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		return -1, c.end(ctx, s, mark, done)
	}
	if werr != nil && c.lost.Load() {
		return -1, fmt.Errorf("machine %s: connection lost: no answer to keepalives for %v", c.Target.ID, 3*c.keepAlivePeriod())
	}
	return exitOf(c.Target, werr)
}

func (c *Client) keepAlivePeriod() time.Duration {
	if c.opts.KeepAlive == 0 {
		return 15 * time.Second
	}
	return c.opts.KeepAlive
}

// end stops a command whose ctx ended: TERM to its process group, KILL after
// the grace period, and the session closed either way.
func (c *Client) end(ctx context.Context, s *ssh.Session, mark string, done <-chan error) error {
	grace := c.opts.KillGrace
	if grace <= 0 {
		grace = 2 * time.Second
	}
	why := "cancelled"
	if ctx.Err() == context.DeadlineExceeded {
		why = "timed out"
	}
	ended := func(wait time.Duration) bool {
		select {
		case <-done:
			return true
		case <-time.After(wait):
			return false
		}
	}
	for _, sig := range []ssh.Signal{ssh.SIGTERM, ssh.SIGKILL} {
		s.Signal(sig)
		c.killMarked(mark, sig, grace)
		if ended(grace) {
			return fmt.Errorf("machine %s: command %s; ended with SIG%s: %w", c.Target.ID, why, sig, ctx.Err())
		}
	}
	s.Close()
	return fmt.Errorf("machine %s: command %s; it did not end on TERM nor KILL, session closed: %w", c.Target.ID, why, ctx.Err())
}

// killScript signals the process groups of the processes whose environment
// holds IRONRACK_RUN=$1, with signal $2. Plain POSIX sh over /proc, fed on
// stdin to `sh -s`.
const killScript = `for e in /proc/[0-9]*/environ; do
  if tr '\0' '\n' < "$e" 2>/dev/null | grep -qx "IRONRACK_RUN=$1"; then
    p=${e#/proc/}; p=${p%/environ}
    g=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f3)
    [ -n "$g" ] && [ "$g" -gt 1 ] && kill -s "$2" -- "-$g" 2>/dev/null
    kill -s "$2" "$p" 2>/dev/null
  fi
done; true`

// killMarked runs killScript in a session of its own, bounded by limit.
func (c *Client) killMarked(mark string, sig ssh.Signal, limit time.Duration) {
	s, err := c.conn.NewSession()
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan error, 1)
	s.Stdin = strings.NewReader(killScript)
	go func() { done <- s.Run("sh -s " + mark + " " + string(sig)) }()
	select {
	case <-done:
	case <-time.After(limit):
	}
}

func newMark() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func exitOf(t Target, err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		if sig := ee.Signal(); sig != "" {
			return -1, fmt.Errorf("machine %s: %w", t.ID, &SignalError{Signal: sig, Msg: ee.Msg()})
		}
		return ee.ExitStatus(), nil
	}
	var em *ssh.ExitMissingError
	if errors.As(err, &em) {
		return -1, fmt.Errorf("machine %s: the command ended without an exit status (connection lost?): %w", t.ID, err)
	}
	return -1, fmt.Errorf("machine %s: connection lost: %w", t.ID, err)
}

// KeyFileAuth reads an unencrypted private key file (OpenSSH, PEM or PKCS#8).
func KeyFileAuth(path string) (ssh.AuthMethod, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		var pe *ssh.PassphraseMissingError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("identity %s: the key has a passphrase: load it into ssh-agent and leave out --identity", path)
		}
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	return ssh.PublicKeys(signer), nil
}

// AgentAuth connects to the ssh-agent listening on socket (the value of
// SSH_AUTH_SOCK, which the caller reads). Close the returned closer when done.
func AgentAuth(socket string) (ssh.AuthMethod, io.Closer, error) {
	if socket == "" {
		return nil, nil, errors.New("no ssh-agent (SSH_AUTH_SOCK is unset): start one and add a key, or give --identity FILE")
	}
	conn, err := net.Dial("unix", socket)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh-agent at %s: %w", socket, err)
	}
	ac := agent.NewClient(conn)
	signers, err := ac.Signers()
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("ssh-agent at %s: list keys: %w", socket, err)
	}
	if len(signers) == 0 {
		conn.Close()
		return nil, nil, fmt.Errorf("ssh-agent at %s holds no key: ssh-add one, or give --identity FILE", socket)
	}
	return ssh.PublicKeys(signers...), conn, nil
}
