// Command ironrack-agent is the agent: /init of the initramfs that
// `ironrack images build discovery` builds. It discovers, commissions,
// deploys or wipes the machine, as the boot server's ironrack.mode says,
// then powers it off (or, after a deploy, reboots it). See docs/agent.md.
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
	next, err := agent.Run(context.Background(), os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stdout, "ironrack-agent: %v\n", err)
		// Leave the error on the console a moment before the machine goes dark.
		time.Sleep(5 * time.Second)
	}
	if next == agent.NextReboot {
		fmt.Fprintln(os.Stdout, "ironrack-agent: rebooting into the deployed image")
		if err := agent.Reboot(); err != nil {
			fmt.Fprintf(os.Stdout, "ironrack-agent: reboot: %v\n", err)
		}
	}
	if err := agent.PowerOff(); err != nil {
		// As PID 1, exiting panics the kernel; that at least stops the machine.
		fmt.Fprintf(os.Stdout, "ironrack-agent: power off: %v\n", err)
		os.Exit(1)
	}
}
