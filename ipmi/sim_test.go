package ipmi_test

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/ipmi"
)

// The ipmi tests use 127.0.11.1 upwards (inside this package's range
// 127.0.10.1-127.0.19.254; internal/ipmisim's own tests use 127.0.10.200+).
// Each test takes fresh addresses so tests can run in parallel.
var nextSim atomic.Uint32

func simAddr(n int) netip.Addr {
	first := nextSim.Add(uint32(n)) - uint32(n)
	a := netip.AddrFrom4([4]byte{127, 0, byte(11 + first/250), byte(1 + first%250)})
	return a
}

// startSims starts n sims, each on its own address (n must be <= 250 so a
// batch stays in one /24).
func startSims(t *testing.T, n int, o ipmisim.Options) []*ipmisim.BMC {
	t.Helper()
	ipmisim.Require(t)
	if n > 250 {
		t.Fatalf("startSims: %d > 250", n)
	}
	for {
		a := simAddr(n)
		if int(a.As4()[3])+n-1 <= 250 {
			o.N, o.First = n, a
			break
		}
	}
	return ipmisim.Start(t, o)
}

func creds(b *ipmisim.BMC) ipmi.Credentials {
	return ipmi.Credentials{
		Host:     b.Addr.String(),
		Port:     b.Port,
		Username: b.Username,
		Password: b.Password,
	}
}
