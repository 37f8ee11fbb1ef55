package ipmi_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/ironrack/ironrack/internal/ipmisim"
	"github.com/ironrack/ironrack/ipmi"
)

// The Controller against a real ipmi_sim BMC (needs root and the openipmi
// package, like the other tests). In cmd, Credentials come from the
// inventory's encrypted store and Logger from the CLI's flags.
func ExampleController() {
	dir, err := os.MkdirTemp("", "ipmi-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	sims, err := ipmisim.StartProcesses(ipmisim.Options{First: netip.MustParseAddr("127.0.19.250"), Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ipmisim.StopAll(sims)

	ctl := &ipmi.Controller{Providers: ipmi.DefaultProviders()}
	cred := ipmi.Credentials{Host: "127.0.19.250", Username: "admin", Password: "secret"}
	ctx := context.Background()

	res, err := ctl.Power(ctx, cred, ipmi.On, ipmi.PowerOptions{})
	fmt.Println("on:", res.Before, "->", res.After, "changed:", res.Changed, "via", res.Provider, err)

	res, err = ctl.Power(ctx, cred, ipmi.On, ipmi.PowerOptions{})
	fmt.Println("on again:", res.Before, "->", res.After, "changed:", res.Changed, err)

	_, err = ctl.Power(ctx, cred, ipmi.Cycle, ipmi.PowerOptions{})
	fmt.Println("cycle without AllowReboot refused:", errors.Is(err, ipmi.ErrRebootNotAllowed))

	boot, err := ctl.SetBootDevice(ctx, cred, ipmi.BootPXE, ipmi.BootOptions{Persistent: true})
	fmt.Println("boot reads back:", boot.ReadBack.Device, err)
	for _, w := range boot.Warnings {
		fmt.Println("warning:", w.Code)
	}

	cred.Password = "wrong"
	_, err = ctl.PowerStatus(ctx, cred)
	fmt.Println("wrong password:", ipmi.Reason(err))

	// Output:
	// on: off -> on changed: true via goipmi <nil>
	// on again: on -> on changed: false <nil>
	// cycle without AllowReboot refused: true
	// boot reads back: pxe <nil>
	// warning: persistent-dropped
	// warning: flags-not-valid
	// wrong password: auth
}

// A Redfish BMC with a self-signed certificate is reached through a pin:
// the fingerprint of the certificate the operator confirmed at import.
func ExampleTLS() {
	cred := ipmi.Credentials{
		Host:     "10.9.0.2",
		Username: "admin",
		Password: "from the credential store",
		Protocol: ipmi.ProtocolRedfish,
		TLS:      ipmi.TLS{Pin: "sha256:5663de810551f269ea5c9a17b800d776710415b3e04b3fe20d8dde393ce50b01"},
	}
	fmt.Println(cred, cred.TLS.Mode())
	// Output: admin@10.9.0.2:443 pinned
}
