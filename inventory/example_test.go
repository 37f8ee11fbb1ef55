package inventory_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"
	"github.com/ironrack/ironrack/inventory"
)

func ExampleParseWhere() {
	w, err := inventory.ParseWhere(`rack == "r2" and mem_gb >= 128`)
	if err != nil {
		panic(err)
	}
	known := &inventory.Machine{Rack: "r2", MemGB: 256}
	unknown := &inventory.Machine{Rack: "r2"} // memory not discovered yet
	a, _ := w.Match(known)
	b, _ := w.Match(unknown)
	fmt.Println(a, b)

	// A missing field never matches by accident, not even negated.
	neg, _ := inventory.ParseWhere(`not (mem_gb >= 128)`)
	c, _ := neg.Match(unknown)
	fmt.Println(c)
	// Output:
	// true false
	// false
}

func ExampleParseSheet() {
	sheet := `rack,slot,serial,bmc_address,bmc_username,bmc_password,macs
r1,1,S1,10.0.0.1,admin,pw,52:54:00:00:00:01
r1,1,S2,10.0.0.300,admin,pw,nope
`
	_, err := inventory.ParseSheet("rack.csv", strings.NewReader(sheet))
	fmt.Println(err)
	// Output:
	// rack.csv:3: bmc_address: "10.0.0.300" is not an IP address or host name
	// rack.csv:3: macs: malformed MAC "nope"
	// rack.csv:3: slot: rack/slot r1/1 also on line 2
}

// Import a rack sheet, then claim three ready machines spread over racks.
func ExampleStore_Allocate() {
	ctx := context.Background()
	client, _ := api.NewClient(api.DefaultConfig())
	sealer, err := inventory.LoadKeyFile("/root/.ironrack/key", true)
	if err != nil {
		panic(err)
	}
	store := inventory.New(client, inventory.Config{Sealer: sealer})

	rows, err := inventory.ParseSheet("rack.csv", strings.NewReader("rack,slot,serial,bmc_address,bmc_username,bmc_password\nr1,1,S1,10.0.0.1,admin,pw\n"))
	if err != nil {
		panic(err) // every problem, as FILE:LINE: column: problem
	}
	if _, err := store.Import(ctx, "rack.csv", rows, inventory.Change{Why: "new rack"}); err != nil {
		panic(err)
	}
	w, _ := inventory.ParseWhere(`mem_gb >= 256`)
	ms, err := store.Allocate(ctx, inventory.AllocateRequest{Count: 3, Where: w, Spread: "rack", Owner: "ingest"})
	if err != nil {
		panic(err) // errors.Is(err, inventory.ErrInsufficient) when the pool is short
	}
	for _, m := range ms {
		fmt.Println(m.ID, m.Rack)
	}
}
