// Command ironrack-agent is the discovery agent: /init of the initramfs
// that `ironrack images build discovery` builds. It reports the machine's
// facts to the boot server and powers the machine off. See docs/agent.md.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ironrack/ironrack/agent"
)

func main() {
	// The DHCP client's transaction IDs come from u-root's rand, which
	// spins on getrandom(GRND_NONBLOCK) until the kernel's CRNG is ready;
	// under TCG (and on hardware without a trusted RNG) that takes minutes
	// at boot, since nothing blocking on getrandom triggers the kernel's
	// jitter seeding. A transaction ID needs no secrecy: take /dev/urandom.
	os.Setenv("UROOT_NOHWRNG", "1")
	if err := agent.Run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintf(os.Stdout, "ironrack-agent: %v\n", err)
		// Leave the error on the console a moment before the machine goes dark.
		time.Sleep(5 * time.Second)
	}
	if err := agent.PowerOff(); err != nil {
		// As PID 1, exiting panics the kernel; that at least stops the machine.
		fmt.Fprintf(os.Stdout, "ironrack-agent: power off: %v\n", err)
		os.Exit(1)
	}
}
