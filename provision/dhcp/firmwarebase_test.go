package dhcp_test

import (
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/ironrack/ironrack/provision/dhcp"
)

// TestBootForFirmwareBase: with FirmwareBase set (ironrack serve
// --https-cert), only the UEFI HTTP boot client's first fetch moves to it;
// iPXE's script and everything after stay on HTTPBase, over v4 and v6.
func TestBootForFirmwareBase(t *testing.T) {
	names := dhcp.BootNames{HTTPBase: "http://192.0.2.1:8080", FirmwareBase: "https://192.0.2.1:8443"}
	mac := "52:54:00:12:34:56"
	httpBoot := discover(mac, arch(iana.EFI_X86_64_HTTP), vendor("HTTPClient:Arch:00016:UNDI:003001"))
	b, ok := dhcp.BootFor(dhcp.ClassifyFirmware(httpBoot), mac, names)
	if !ok || b.File != "https://192.0.2.1:8443/ipxe/ipxe.efi" || b.VendorClass != "HTTPClient" {
		t.Errorf("UEFI HTTP boot client got %+v (ok %v), want https://192.0.2.1:8443/ipxe/ipxe.efi with HTTPClient", b, ok)
	}
	ipxeReq := discover(mac, arch(iana.EFI_X86_64), userClass("iPXE"))
	if b, _ := dhcp.BootFor(dhcp.ClassifyFirmware(ipxeReq), mac, names); b.File != "http://192.0.2.1:8080/boot.ipxe?mac="+mac {
		t.Errorf("iPXE got %q, want its script over HTTP", b.File)
	}

	names6 := dhcp.BootNames{HTTPBase: "http://[2001:db8::1]:8080", FirmwareBase: "https://[2001:db8::1]:8443"}
	fw := dhcp.ClassifyFirmware6(msg6(t, dhcpv6.MessageTypeSolicit, llDUID1,
		dhcpv6.WithArchType(iana.EFI_X86_64_HTTP), vendorClass("HTTPClient:Arch:00016:UNDI:003016")))
	url, hc, ok := dhcp.BootURL6(fw, mac1.String(), names6, netip.MustParseAddr("2001:db8::1"))
	if !ok || !hc || url != "https://[2001:db8::1]:8443/ipxe/ipxe.efi" {
		t.Errorf("v6 UEFI HTTP boot got %q httpClient=%v ok=%v, want https://[2001:db8::1]:8443/ipxe/ipxe.efi", url, hc, ok)
	}
}
