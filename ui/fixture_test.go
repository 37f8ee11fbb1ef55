package ui

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/inventory"
)

// importFleet imports n machines in racks of 40 (rk00, rk01, ...) through
// the store, as `ironrack inventory import` does: a third tagged
// class=storage, vendors alternating. s needs a Sealer.
func importFleet(tb testing.TB, s *inventory.Store, n int) {
	tb.Helper()
	var b strings.Builder
	b.WriteString("rack,slot,serial,bmc_address,bmc_port,bmc_username,bmc_credential_ref,vendor,model,tags\n")
	vendors := []string{"Dell", "HPE", "Supermicro"}
	for i := range n {
		class := []string{"storage", "compute", "query"}[i%3]
		fmt.Fprintf(&b, "rk%02d,%d,FLEET%05d,127.1.%d.%d,%d,admin,shared/fleet,%s,M%d,class=%s\n",
			i/40, i%40+1, i, i/250, i%250+1, 623+i/60000, vendors[i%3], i%7, class)
	}
	if err := s.SetCredential(context.Background(), "shared/fleet", "fleet-pw"); err != nil {
		tb.Fatal(err)
	}
	rows, err := inventory.ParseSheet("fleet.csv", strings.NewReader(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Import(context.Background(), "fleet.csv", rows, inventory.Change{}); err != nil {
		tb.Fatal(err)
	}
}
