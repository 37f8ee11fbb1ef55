package dhcp

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Firmware is what a client's options say about the code sending them.
type Firmware struct {
	// PXE: option 60 starts with "PXEClient" or "HTTPClient", or option 93 is present.
	PXE bool
	// Arch is the first architecture of option 93, or the one in option 60's
	// "PXEClient:Arch:NNNNN" when option 93 is absent. Valid only if HasArch.
	Arch    iana.Arch
	HasArch bool
	// IPXE: the client is iPXE already (option 77 is "iPXE", or option 175 is present).
	IPXE bool
	// HTTPClient: option 60 starts with "HTTPClient" (UEFI HTTP boot).
	HTTPClient bool
}

// ClassifyFirmware reads the boot-relevant options of req. It is pure and
// never fails: a malformed option counts as absent.
func ClassifyFirmware(req *dhcpv4.DHCPv4) Firmware {
	var f Firmware
	vc := req.GetOneOption(dhcpv4.OptionClassIdentifier)
	if bytes.HasPrefix(vc, []byte("PXEClient")) {
		f.PXE = true
	}
	if bytes.HasPrefix(vc, []byte("HTTPClient")) {
		f.PXE, f.HTTPClient = true, true
	}
	if a := req.GetOneOption(dhcpv4.OptionClientSystemArchitectureType); len(a) >= 2 && len(a)%2 == 0 {
		f.PXE, f.HasArch = true, true
		f.Arch = iana.Arch(binary.BigEndian.Uint16(a))
	} else if arch, ok := archFromVendorClass(string(vc)); ok {
		f.Arch, f.HasArch = arch, true
	}
	uc := req.GetOneOption(dhcpv4.OptionUserClassInformation)
	// iPXE sends a plain "iPXE"; RFC 3004 clients length-prefix each class.
	if string(uc) == "iPXE" || string(uc) == "\x04iPXE" {
		f.IPXE = true
	}
	if req.Options.Has(dhcpv4.GenericOptionCode(175)) {
		f.IPXE = true
	}
	return f
}

// archFromVendorClass parses "PXEClient:Arch:00007:UNDI:003016".
func archFromVendorClass(vc string) (iana.Arch, bool) {
	for _, p := range []string{"PXEClient:Arch:", "HTTPClient:Arch:"} {
		if rest, ok := strings.CutPrefix(vc, p); ok {
			if len(rest) < 5 {
				return 0, false
			}
			n, err := strconv.ParseUint(rest[:5], 10, 16)
			if err != nil {
				return 0, false
			}
			return iana.Arch(n), true
		}
	}
	return 0, false
}

// Boot is the boot part of a reply.
type Boot struct {
	// File is the boot file name (TFTP) or URL (HTTP).
	File string
	// TFTP: File is fetched by TFTP from this server (siaddr and option 66 set).
	TFTP bool
	// VendorClass is echoed as option 60 ("HTTPClient" for UEFI HTTP boot).
	VendorClass string
}

// BootNames are the file names and URLs a server hands out.
type BootNames struct {
	// BIOS is the TFTP file for arch 0. If empty, "undionly.kpxe".
	BIOS string
	// EFI is the TFTP file for arch 7 and 9. If empty, "ipxe.efi".
	EFI string
	// HTTPBase is the boot HTTP server's base URL, e.g. "http://192.0.2.1:8080".
	HTTPBase string
	// FirmwareBase is the base URL of a UEFI HTTP boot client's first
	// fetch (the iPXE binary), e.g. "https://192.0.2.1:8443" when the
	// firmware fetches it over HTTPS. If empty, HTTPBase.
	FirmwareBase string
}

func (n BootNames) withDefaults() BootNames {
	if n.BIOS == "" {
		n.BIOS = "undionly.kpxe"
	}
	if n.EFI == "" {
		n.EFI = "ipxe.efi"
	}
	if n.FirmwareBase == "" {
		n.FirmwareBase = n.HTTPBase
	}
	return n
}

// Paths on the boot HTTP server; provision/httpboot serves them.
const (
	// ScriptPath is the iPXE script endpoint; the query carries mac=.
	ScriptPath = "/boot.ipxe"
	// IPXEPath is where the iPXE binaries are served over HTTP (UEFI HTTP boot).
	IPXEPath = "/ipxe/"
)

// BootFor decides what f should boot, given the names in n:
//
//	iPXE already (77 "iPXE" or 175)       -> HTTP URL of its script
//	UEFI HTTP boot (60 HTTPClient, 16)    -> FirmwareBase URL of ipxe.efi, 60 echoed
//	arch 0 (BIOS)                         -> undionly.kpxe over TFTP
//	arch 7, 9 (x64 UEFI)                  -> ipxe.efi over TFTP
//
// ok is false when f is not a network-boot client this server can serve
// (plain DHCP, or an architecture with no binary here).
func BootFor(f Firmware, mac string, n BootNames) (b Boot, ok bool) {
	n = n.withDefaults()
	switch {
	case !f.PXE && !f.IPXE:
		return Boot{}, false
	case f.IPXE:
		return Boot{File: n.HTTPBase + ScriptPath + "?mac=" + mac}, true
	case f.HTTPClient:
		if f.HasArch && f.Arch == iana.EFI_X86_64_HTTP {
			return Boot{File: n.FirmwareBase + IPXEPath + n.EFI, VendorClass: "HTTPClient"}, true
		}
		return Boot{}, false
	case !f.HasArch:
		return Boot{}, false
	case f.Arch == iana.INTEL_X86PC:
		return Boot{File: n.BIOS, TFTP: true}, true
	case f.Arch == iana.EFI_X86_64 || f.Arch == iana.EFI_BC:
		return Boot{File: n.EFI, TFTP: true}, true
	}
	return Boot{}, false
}
