package ipmi_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/ipmi"
	"github.com/jacobweinstock/registrar"
)

func TestWrongPasswordIsClearAndFast(t *testing.T) {
	t.Parallel()
	b := startSims(t, 1, ipmisim.Options{})[0]
	bad := creds(b)
	bad.Password = "not-the-password"
	c := &ipmi.Controller{} // all default providers: the auth error must stop the chain
	start := time.Now()
	_, err := c.PowerStatus(context.Background(), bad)
	elapsed := time.Since(start)
	if !errors.Is(err, ipmi.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if elapsed > time.Second {
		t.Errorf("took %v, want < 1s", elapsed)
	}
	msg := err.Error()
	for _, want := range []string{b.Addr.String(), "wrong credentials", `"admin"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	for _, bad := range []string{"invalid authentication algorithm", "not-the-password", "ipmitool", "gofish"} {
		if strings.Contains(msg, bad) {
			t.Errorf("error %q contains %q", msg, bad)
		}
	}
	if sets, _ := b.Sets(); len(sets) != 0 {
		t.Errorf("sets %q after a failed login", sets)
	}
}

func TestUnreachableFailsWithinDeadline(t *testing.T) {
	t.Parallel()
	ipmisim.Require(t)
	addr := simAddr(1) // allocated, but no sim listens there
	cred := ipmi.Credentials{Host: addr.String(), Username: "admin", Password: "secret"}
	tests := map[string]struct {
		protocol ipmi.Protocol
	}{
		"auto (ipmi then redfish)": {ipmi.ProtocolAuto},
		"ipmi only":                {ipmi.ProtocolIPMI},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cred := cred
			cred.Protocol = tc.protocol
			c := &ipmi.Controller{Timeout: 2 * time.Second}
			start := time.Now()
			_, err := c.PowerStatus(context.Background(), cred)
			if d := time.Since(start); d > 2*time.Second+200*time.Millisecond {
				t.Errorf("took %v, want within the 2s deadline", d)
			}
			if !errors.Is(err, ipmi.ErrUnreachable) {
				t.Errorf("err = %v, want ErrUnreachable", err)
			}
			t.Logf("error: %v", err)
			if strings.Contains(err.Error(), "ipmitool") {
				t.Errorf("err %q: ipmitool was tried after go-ipmi found the IPMI port dead", err)
			}
		})
	}
}

// TestFrozenBMCMidBatch: one sim is SIGSTOPped while the batch runs. It fails
// with a timeout within its deadline, the others succeed, and it answers
// again after SIGCONT.
func TestFrozenBMCMidBatch(t *testing.T) {
	t.Parallel()
	const n = 8
	bmcs := startSims(t, n, ipmisim.Options{PowerOn: true})
	frozen := bmcs[n-1]
	var ts []ipmi.Target
	for i, b := range bmcs {
		ts = append(ts, ipmi.Target{ID: fmt.Sprintf("m%d", i), Credentials: creds(b)})
	}
	c := &ipmi.Controller{ExchangeTimeout: 200 * time.Millisecond}
	const callTimeout = 800 * time.Millisecond
	var froze atomic.Bool
	start := time.Now()
	res := ipmi.Bulk(context.Background(), ts, ipmi.BulkOptions{
		Concurrency: 2, CallTimeout: callTimeout, Retries: 1, Backoff: 10 * time.Millisecond,
		Progress: func(p ipmi.Progress) {
			if p.Done == 1 && froze.CompareAndSwap(false, true) {
				if err := frozen.Freeze(); err != nil {
					t.Error(err)
				}
			}
		},
	}, func(ctx context.Context, tg ipmi.Target) (ipmi.PowerState, error) {
		return c.PowerStatus(ctx, tg.Credentials)
	})
	t.Cleanup(func() { _ = frozen.Thaw() })
	elapsed := time.Since(start)
	for i, r := range res[:n-1] {
		if r.Err != nil || r.Value != ipmi.StateOn {
			t.Errorf("target %d = %s, %v; want on", i, r.Value, r.Err)
		}
	}
	last := res[n-1]
	t.Logf("frozen target: %v", last.Err)
	if !errors.Is(last.Err, ipmi.ErrTimeout) || last.Attempts != 2 {
		t.Errorf("frozen target = %v after %d attempts, want ErrTimeout after 2", last.Err, last.Attempts)
	}
	if max := 2*callTimeout + 300*time.Millisecond; last.Elapsed > max {
		t.Errorf("frozen target took %v, want <= %v (2 attempts of %v + backoff)", last.Elapsed, max, callTimeout)
	}
	if elapsed > 3*time.Second {
		t.Errorf("batch took %v", elapsed)
	}

	if err := frozen.Thaw(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if st, err := c.PowerStatus(ctx, creds(frozen)); err != nil || st != ipmi.StateOn {
		t.Errorf("after SIGCONT: %s, %v; want on", st, err)
	}
}

// countingProvider wraps a real provider and counts how often a driver is
// made for a call, to see which providers the Controller probes.
func countingProvider(p ipmi.Provider, n *atomic.Int32) ipmi.Provider {
	inner := p.New
	p.New = func(cred ipmi.Credentials, o ipmi.DriverOptions) (any, registrar.Features, error) {
		n.Add(1)
		return inner(cred, o)
	}
	return p
}

// TestWorkingProviderIsCached: Redfish first in the list, but the sim has
// no HTTPS. The first call falls back to go-ipmi; later calls go straight
// to go-ipmi without probing Redfish again.
func TestWorkingProviderIsCached(t *testing.T) {
	t.Parallel()
	b := startSims(t, 1, ipmisim.Options{})[0]
	var redfishCalls, goipmiCalls atomic.Int32
	c := &ipmi.Controller{Providers: []ipmi.Provider{
		countingProvider(ipmi.Redfish(), &redfishCalls),
		countingProvider(ipmi.GoIPMI(), &goipmiCalls),
	}}
	for range 3 {
		if _, err := c.PowerStatus(context.Background(), creds(b)); err != nil {
			t.Fatal(err)
		}
	}
	if r, g := redfishCalls.Load(), goipmiCalls.Load(); r != 1 || g != 3 {
		t.Errorf("redfish probed %d times, goipmi used %d times; want 1 and 3", r, g)
	}
	if got := c.WorkingProvider(creds(b)); got != "goipmi" {
		t.Errorf("WorkingProvider = %q, want goipmi", got)
	}
}

// TestIPMIToolFallback: the whole power path through bmclib's ipmitool
// provider alone.
func TestIPMIToolFallback(t *testing.T) {
	t.Parallel()
	b := startSims(t, 1, ipmisim.Options{})[0]
	c := &ipmi.Controller{Providers: []ipmi.Provider{ipmi.IPMITool()}, PollInterval: 50 * time.Millisecond}
	res, err := c.Power(context.Background(), creds(b), ipmi.On, ipmi.PowerOptions{})
	if err != nil || !res.Changed || res.After != ipmi.StateOn || res.Provider != "ipmitool" {
		t.Fatalf("Power(on) via ipmitool = %+v, %v", res, err)
	}
	if on, _ := b.Power(); !on {
		t.Error("sim not on")
	}
}

// TestIPMIToolPasswordNotInArgv runs the ipmitool provider through a wrapper
// on PATH that records its arguments and environment: the password must be
// in IPMITOOL_PASSWORD (with -E), never in argv.
func TestIPMIToolPasswordNotInArgv(t *testing.T) {
	b := startSims(t, 1, ipmisim.Options{Password: "Argv-check-9876"})[0]
	dir := t.TempDir()
	log := filepath.Join(dir, "calls.log")
	wrapper := "#!/bin/sh\necho \"argv: $*\" >> " + log + "\necho \"env: $IPMITOOL_PASSWORD\" >> " + log + "\nexec /usr/bin/ipmitool \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "ipmitool"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	c := &ipmi.Controller{Providers: []ipmi.Provider{ipmi.IPMITool()}}
	if _, err := c.PowerStatus(context.Background(), creds(b)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var argv, env int
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		switch {
		case strings.HasPrefix(line, "argv: "):
			argv++
			if strings.Contains(line, b.Password) || !strings.Contains(line, "-E") {
				t.Errorf("ipmitool argv %q: password present or -E missing", line)
			}
		case line == "env: "+b.Password:
			env++
		}
	}
	if argv == 0 || env != argv {
		t.Errorf("%d calls, %d with the password in the environment:\n%s", argv, env, data)
	}
}
