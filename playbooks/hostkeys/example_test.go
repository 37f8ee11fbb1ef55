package hostkeys_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"

	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/playbooks/hostkeys"
)

// A client of the trust (ironrack run) builds it for its selection, with
// hostkeys.Load(ctx, store, machines, port) from the inventory, and sets
// both the callback and the algorithms on each connection.
func ExampleTrust() {
	key, _ := ssh.NewPublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32)).Public())
	machines := []*inventory.Machine{{ID: "m-0123456789ab", IP: "10.0.0.5", HostKeys: []string{inventory.CanonicalKey(key)}}}
	trust, err := hostkeys.New(hostkeys.Hosts(machines, 22), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := &ssh.ClientConfig{
		User:              "root",
		HostKeyCallback:   trust.HostKeyCallback(),
		HostKeyAlgorithms: trust.HostKeyAlgorithms("10.0.0.5:22"),
	}
	_ = cfg // ssh.Dial("tcp", "10.0.0.5:22", cfg)
	fmt.Println(cfg.HostKeyAlgorithms)
	os.Stdout.Write(trust.KnownHosts())
	// Output:
	// [ssh-ed25519]
	// # ironrack: host keys recorded in the inventory (playbooks/hostkeys)
	// # m-0123456789ab
	// 10.0.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c
}
