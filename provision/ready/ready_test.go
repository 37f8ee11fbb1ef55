package ready

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/internal/consuldev"
	"github.com/ironrack/ironrack/internal/sshdtest"
)

// register puts an OS agent's node for machine id in the catalog with one
// service check in status.
func register(t *testing.T, c *api.Client, id, status string) {
	t.Helper()
	_, err := c.Catalog().Register(&api.CatalogRegistration{
		Node: "web-1", Address: "127.0.0.1", NodeMeta: map[string]string{images.MetaMachine: id},
		Service: &api.AgentService{ID: "ssh", Service: "ssh", Port: 22},
		Check:   &api.AgentCheck{CheckID: "service:ssh", Name: "ssh", ServiceID: "ssh", Status: status, Output: "dial tcp: connection refused"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

// consulClient starts a real Consul agent for the OS agents' checks.
func consulClient(t *testing.T) *api.Client {
	a := consuldev.T(t)
	client, err := api.NewClient(&api.Config{Address: a.Addr})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// waitAsync runs cfg.Wait on srv in the background.
func waitAsync(cfg Config, srv *sshdtest.Server) (<-chan error, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	done := make(chan error, 1)
	go func() { done <- cfg.Wait(ctx, Target{ID: "m-1", Addr: srv.Addr}) }()
	return done, cancel
}

// notYet fails t if Wait returns within d.
func notYet(t *testing.T, done <-chan error, d time.Duration, why string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("Wait returned %s (err %v)", why, err)
	case <-time.After(d):
	}
}

// TestWaitSurvivesDroppedFirstLogin plays a deployed machine on its first
// boot: its agent is healthy, sshd accepts one login, then goes away
// (cloud-init restarting it) and comes back. Wait returns only after two
// logins in a row on the restarted sshd, never on the first connection.
func TestWaitSurvivesDroppedFirstLogin(t *testing.T) {
	client := consulClient(t)
	register(t, client, "m-1", api.HealthPassing)
	srv := sshdtest.Start(t)
	first := srv.NextAccept()
	done, cancel := waitAsync(Config{SSH: srv.ClientConfig(), Command: "hostname", Logins: 2, Interval: time.Second,
		Health: ConsulAgent{Client: client}}, srv)
	defer cancel()
	select {
	case <-first:
	case err := <-done:
		t.Fatalf("Wait returned before any login: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no login within 30s")
	}
	srv.Stop() // the machine drops sshd right after the first login
	notYet(t, done, 3*time.Second, "after the first connection, which the machine then dropped")
	srv.Restart()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not return within 20s of sshd coming back")
	}
	if n := srv.Accepted(); n < 2 {
		t.Errorf("Wait returned after %d logins on the restarted sshd, want 2 in a row", n)
	}
}

// TestWaitForAgentHealth: logins succeed, but Wait returns only once the
// deployed OS's own Consul agent has joined and every check on its node
// passes.
func TestWaitForAgentHealth(t *testing.T) {
	client := consulClient(t)
	srv := sshdtest.Start(t)
	done, cancel := waitAsync(Config{SSH: srv.ClientConfig(), Interval: 500 * time.Millisecond,
		Health: ConsulAgent{Client: client}}, srv)
	defer cancel()
	notYet(t, done, 3*time.Second, "with no OS agent registered")
	register(t, client, "m-1", api.HealthCritical)
	notYet(t, done, 3*time.Second, "with the agent's check critical")
	if n := srv.Accepted(); n < 4 {
		t.Fatalf("sshd accepted %d logins: Wait stopped logging in", n)
	}
	register(t, client, "m-1", api.HealthPassing)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Wait did not return within 15s of the check passing")
	}
	// The error while not healthy says which check.
	register(t, client, "m-1", api.HealthCritical)
	err := ConsulAgent{Client: client}.Healthy(context.Background(), "m-1")
	if err == nil || !strings.Contains(err.Error(), `node web-1 check "ssh" is critical: dial tcp: connection refused`) {
		t.Errorf("Healthy with a critical check: %v", err)
	}
	if err := (ConsulAgent{Client: client}).Healthy(context.Background(), "m-2"); err == nil || !strings.Contains(err.Error(), "no Consul agent of its own has joined") {
		t.Errorf("Healthy of a machine with no agent: %v", err)
	}
}

// TestWaitNotReady: a machine that never answers ends in a *NotReady that
// names it and the last failure.
func TestWaitNotReady(t *testing.T) {
	srv := sshdtest.Start(t)
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := Config{SSH: srv.ClientConfig(), Interval: 200 * time.Millisecond}.Wait(ctx, Target{ID: "m-9", Addr: srv.Addr})
	var nr *NotReady
	if !errors.As(err, &nr) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want *NotReady wrapping the deadline", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "m-9") || !strings.Contains(msg, "connection refused") {
		t.Errorf("error %q names neither the machine nor the cause", msg)
	}
	if err := (Config{}).Wait(ctx, Target{}); err == nil {
		t.Error("Wait without SSH config: no error")
	}
}

// TestWaitCommandFails: a login whose command exits non-zero is a failure.
func TestWaitCommandFails(t *testing.T) {
	srv := sshdtest.Start(t)
	// The command never succeeds, so Wait runs until its context ends. The
	// test ends it once an attempt has completed (the logger sees the exit
	// status), so a busy machine, where one login can take seconds, neither
	// slows the test nor sees every attempt cut short by a fixed deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(&cancelOn{substr: "exited with status 3", cancel: cancel})
	err := Config{SSH: srv.ClientConfig(), Command: "exit 3", Interval: 200 * time.Millisecond, Logger: log}.Wait(ctx, Target{ID: "m-2", Addr: srv.Addr})
	if err == nil || !strings.Contains(err.Error(), "exited with status 3") {
		t.Fatalf("err = %v, want the command's exit status", err)
	}
}

// cancelOn is a slog handler that calls cancel when a record's err
// attribute contains substr.
type cancelOn struct {
	substr string
	cancel func()
}

func (h *cancelOn) Enabled(context.Context, slog.Level) bool { return true }
func (h *cancelOn) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *cancelOn) WithGroup(string) slog.Handler            { return h }
func (h *cancelOn) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" && strings.Contains(a.Value.String(), h.substr) {
			h.cancel()
		}
		return true
	})
	return nil
}
