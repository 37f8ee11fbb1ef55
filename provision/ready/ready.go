// Package ready decides when a deployed machine is ready for what its
// operator does next: log in over SSH and run a command, successfully, a
// number of times in a row, and see the deployed OS's own Consul agent
// report every check of its node passing.
//
// The first accepted connection is not enough. A machine on its first boot
// accepts SSH while cloud-init is still configuring it, and anything that
// restarts sshd or reboots then drops the next login ("connection refused"
// right after a successful one). A failure resets the count.
package ready

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Health reports whether the machine's own agent says it is healthy: nil
// when it is, else an error saying what is not (not registered, a check
// failing). It must return promptly; Wait calls it between logins.
type Health interface {
	Healthy(ctx context.Context, machineID string) error
}

// Config says what ready means. SSH is required; the zero value of the
// rest works.
type Config struct {
	// SSH logs in: user, auth methods and host key callback.
	SSH *ssh.ClientConfig
	// Command runs on each login and must exit 0. If "", "true".
	Command string
	// Logins is how many logins in a row must succeed. If 0, 2.
	Logins int
	// Interval is the pause between attempts. If 0, 2s.
	Interval time.Duration
	// Attempt bounds one login (dial, handshake, command). If 0, 15s.
	Attempt time.Duration
	// Health, when set, must also report the machine healthy, after the
	// logins and before Wait returns.
	Health Health
	// Logger gets each failed attempt at debug level. If nil, discarded.
	Logger *slog.Logger
}

// Target is one machine: its inventory ID and SSH address (host:port).
type Target struct {
	ID, Addr string
}

// NotReady is Wait's error when ctx ends first: the machine and the last
// thing that was not right.
type NotReady struct {
	Target Target
	// Streak is how many logins in a row had succeeded at the end.
	Streak int
	Last   error
	Err    error // ctx's error
}

func (e *NotReady) Error() string {
	return fmt.Sprintf("%s (%s) not ready: %v (%d logins in a row): %v", e.Target.ID, e.Target.Addr, e.Last, e.Streak, e.Err)
}

func (e *NotReady) Unwrap() error { return e.Err }

var (
	errNoAttempt = errors.New("no attempt yet")
	// errCut marks a login that its deadline ended, not the machine.
	errCut = errors.New("cut short by the deadline")
)

// Wait returns nil once t is ready, or a *NotReady when ctx ends first.
func (c Config) Wait(ctx context.Context, t Target) error {
	if c.SSH == nil {
		return errors.New("ready: Config.SSH is required")
	}
	logins, interval, cmd := c.Logins, c.Interval, c.Command
	if logins <= 0 {
		logins = 2
	}
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if cmd == "" {
		cmd = "true"
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	streak := 0
	last := errNoAttempt
	for {
		var err error
		if err = c.login(ctx, t.Addr, cmd); err != nil {
			streak = 0
			err = fmt.Errorf("ssh %s: %w", t.Addr, err)
		} else if streak++; streak >= logins {
			if c.Health == nil {
				return nil
			}
			if err = c.Health.Healthy(ctx, t.ID); err == nil {
				return nil
			}
			err = fmt.Errorf("health: %w", err)
		}
		if err != nil && (!errors.Is(err, errCut) || last == errNoAttempt) {
			// An attempt that the deadline cut short says nothing new.
			last = err
		}
		if err != nil {
			log.Debug("not ready yet", "machine", t.ID, "streak", streak, "err", err)
		}
		select {
		case <-ctx.Done():
			return &NotReady{Target: t, Streak: streak, Last: last, Err: ctx.Err()}
		case <-time.After(interval):
		}
	}
}

// login dials addr, runs cmd and wants exit status 0, all within Attempt.
// A login its deadline (Attempt's or ctx's) ended is marked errCut.
func (c Config) login(ctx context.Context, addr, cmd string) error {
	d := c.Attempt
	if d <= 0 {
		d = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := c.attempt(ctx, addr, cmd)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %w", errCut, err)
	}
	return err
}

// attempt is one login under ctx.
func (c Config) attempt(ctx context.Context, addr, cmd string) error {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	// The handshake and the command honour ctx through the connection's
	// deadline; closing it ends whatever is in flight.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, c.SSH)
	if err != nil {
		conn.Close()
		return err
	}
	client := ssh.NewClient(sc, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	var out bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &out
	if err := sess.Run(cmd); err != nil {
		if o := strings.TrimSpace(out.String()); o != "" {
			return fmt.Errorf("%q: %w: %s", cmd, err, o)
		}
		return fmt.Errorf("%q: %w", cmd, err)
	}
	return nil
}
