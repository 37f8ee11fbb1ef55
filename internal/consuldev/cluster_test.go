package consuldev

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestClusterFaults: the harness's faults do what they say — killing the
// leader elects another, a restarted server becomes a voter again, a cut
// server's own API has no leader, and the cluster heals.
func TestClusterFaults(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, err := API(c.Client)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.KV().Put(&api.KVPair{Key: "x", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	l, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Kill(l)
	l2, err := c.Leader(ctx)
	for err == nil && l2 == l {
		time.Sleep(100 * time.Millisecond)
		l2, err = c.Leader(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed leader %s; %s leads after %s", l.Name, l2.Name, time.Since(start).Round(time.Millisecond))
	c.Restart(l)
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted %s: healthy after %s", l.Name, time.Since(start).Round(time.Millisecond))

	l, _ = c.Leader(ctx)
	c.Cut(l)
	own, _ := API(l.HTTP)
	time.Sleep(3 * time.Second)
	if _, err := own.KV().Put(&api.KVPair{Key: "y", Value: []byte("1")}, nil); err == nil {
		t.Errorf("a write on the cut-off leader %s's side succeeded", l.Name)
	} else {
		t.Logf("write on the cut-off side: %v", err)
	}
	c.Heal(l)
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	kv, _, err := cl.KV().Get("x", &api.QueryOptions{RequireConsistent: true})
	if err != nil || kv == nil {
		t.Fatalf("after heal: %v %v", kv, err)
	}
}
