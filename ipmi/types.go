package ipmi

import "time"

// PowerState is a chassis power state as read from the BMC.
type PowerState string

const (
	StateOn      PowerState = "on"
	StateOff     PowerState = "off"
	StateUnknown PowerState = "unknown"
)

// PowerAction is a power change the Controller can make.
type PowerAction string

const (
	// On powers up a machine that is off; a machine that is on is left
	// alone. On never cycles.
	On PowerAction = "on"
	// Off is a hard power down. Needs AllowReboot if the machine is on.
	Off PowerAction = "off"
	// Cycle is a hard power down followed by a power up. Needs AllowReboot;
	// a machine that is off is left off (with WarnNotRunning): use On.
	Cycle PowerAction = "cycle"
	// Reset is a hard reset (power stays on). Same rules as Cycle.
	Reset PowerAction = "reset"
)

// PowerOptions guard power changes.
type PowerOptions struct {
	// AllowReboot permits Off, Cycle and Reset of a machine that is on.
	// Without it they fail with ErrRebootNotAllowed and change nothing.
	AllowReboot bool
	// DryRun reads the power state and reports what would be done
	// (Result.Changed stays false) without writing anything.
	DryRun bool
}

// PowerResult is what a power change did, as verified by reading back.
type PowerResult struct {
	Action PowerAction
	Before PowerState // read before any write
	After  PowerState // read back after the write (Before if none)
	// Changed is true if a power command was sent to the BMC. With DryRun,
	// WouldChange says whether one would have been.
	Changed     bool
	WouldChange bool
	// Provider is the bmclib provider that did it: "goipmi", "ipmitool",
	// "gofish".
	Provider string
	Warnings []Warning
	Elapsed  time.Duration
}

// BootDevice is a boot override target.
type BootDevice string

const (
	BootPXE   BootDevice = "pxe"
	BootDisk  BootDevice = "disk"
	BootBIOS  BootDevice = "bios"
	BootCDROM BootDevice = "cdrom"
	// BootNone means no override: the machine follows its own boot order.
	BootNone BootDevice = "none"
)

// BootOptions qualify a boot override.
type BootOptions struct {
	// Persistent asks for the override to apply to all future boots, not
	// just the next one.
	Persistent bool
	// EFI asks for a UEFI boot instead of a legacy (BIOS) boot.
	EFI bool
}

// BootOverride is the boot override as read back from the BMC.
type BootOverride struct {
	Device     BootDevice
	Persistent bool
	EFI        bool
	// Valid is IPMI's "boot flags valid" bit: the BMC will hand the
	// override to the firmware at the next boot. Providers that cannot say
	// (Redfish) report true.
	Valid bool
}

// BootResult is what SetBootDevice did.
type BootResult struct {
	Device    BootDevice
	Requested BootOptions
	// ReadBack is the override read back after the set; nil if the provider
	// cannot read it (then Warnings has WarnNotVerified).
	ReadBack *BootOverride
	Provider string
	Warnings []Warning
	Elapsed  time.Duration
}

// WarningCode names a degraded but not failed outcome. The CLI shows these;
// they are not errors because the main intent (power state, boot device)
// was verified.
type WarningCode string

const (
	// WarnPersistentDropped: persistent was requested, the BMC reads back
	// a one-time override (ipmi_sim does this).
	WarnPersistentDropped WarningCode = "persistent-dropped"
	// WarnEFIDropped: EFI was requested, the BMC reads back legacy boot
	// (ipmi_sim does this).
	WarnEFIDropped WarningCode = "efi-dropped"
	// WarnNotValid: the BMC reads back the boot flags as not valid, so
	// firmware may ignore the override (ipmi_sim does this).
	WarnNotValid WarningCode = "flags-not-valid"
	// WarnNotVerified: the provider cannot read back what was written.
	WarnNotVerified WarningCode = "not-verified"
	// WarnNotRunning: Cycle or Reset of a machine that is off did nothing.
	WarnNotRunning WarningCode = "not-running"
	// WarnInsecureTLS: the BMC's certificate was not checked (TLS.Insecure,
	// an explicit per-BMC choice). Callers add it on every use.
	WarnInsecureTLS WarningCode = "tls-insecure"
)

// Warning is one degraded outcome with a sentence for people.
type Warning struct {
	Code    WarningCode
	Message string
}

// Info identifies a BMC.
type Info struct {
	// ManufacturerID is the IANA enterprise number (IPMI); 0 if unknown.
	ManufacturerID uint32
	Manufacturer   string
	ProductID      uint16
	Product        string
	Firmware       string // "9.08"
	IPMIVersion    string // "2.0"; empty for Redfish
	Serial         string // from FRU or Redfish; empty if unknown
	Provider       string
}

// FRU is the inventory a BMC reports for its main board and product.
type FRU struct {
	BoardManufacturer   string
	BoardProduct        string
	BoardSerial         string
	BoardPartNumber     string
	ProductManufacturer string
	ProductName         string
	ProductSerial       string
	ProductPartNumber   string
	ChassisSerial       string
}

// Serial is the best serial number in the FRU: product, then board, then
// chassis.
func (f FRU) Serial() string {
	for _, s := range []string{f.ProductSerial, f.BoardSerial, f.ChassisSerial} {
		if s != "" {
			return s
		}
	}
	return ""
}
