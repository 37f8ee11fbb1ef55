// Package ipmi owns talking to BMCs: power status and changes, boot device,
// BMC identity and FRU, and BMC password rotation, for one BMC at a time
// (Controller) or many (Bulk).
//
// It is built on bmclib v2: each call registers one driver in a bmclib
// client's registry and goes through bmclib's interfaces. ironrack's own
// driver over github.com/bougou/go-ipmi (provider "goipmi", one UDP session,
// a few milliseconds per operation) comes first; bmclib's ipmitool and
// Redfish (gofish) providers are the fallbacks. The list is explicit
// (Controller.Providers, DefaultProviders); nothing registers itself. The
// provider that worked last for a BMC is tried first next time.
//
// Safety is in the library, not the CLI: On never cycles and does nothing to
// a machine that is on; Off, Cycle and Reset of a machine that is on need
// PowerOptions.AllowReboot; every write is read back (power until it matches
// or the deadline passes, the boot device once set), and what a BMC silently
// dropped comes back as a Warning.
//
// Errors name the BMC and wrap a sentinel the caller can branch on: ErrAuth,
// ErrUnreachable, ErrTimeout, ErrUnsupported, ErrRefused, ErrNotApplied,
// ErrReverted (a Redfish boot override the BMC silently put back), ErrTLS (a
// Redfish BMC's certificate not trusted), ErrRebootNotAllowed. Reason gives
// a short word for tables.
//
// Redfish BMCs' certificates are verified by default (Credentials.TLS):
// against the site's CA or the system's roots, or against a pinned
// fingerprint; accepting any certificate is an explicit per-BMC choice.
//
// The package takes credentials as values (Credentials) and never reads or
// writes the inventory: callers load credentials, and store a rotated
// password only after RotatePassword returns nil.
package ipmi
