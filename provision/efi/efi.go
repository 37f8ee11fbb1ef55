// Package efi owns the UEFI data the boot path hands to firmware: the
// EFI_SIGNATURE_LIST of the CA certificates EDK2 trusts for HTTPS boot.
// EDK2 (OVMF) reads it from fw_cfg "etc/edk2/https/cacerts" (QEMU:
// -fw_cfg name=etc/edk2/https/cacerts,file=cacerts.esl), or from the
// TlsCaCertificate variable a firmware setup screen enrolls; either way
// it is a signature list of X.509 certificates, not PEM.
package efi

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ironrack/ironrack/internal/pemcert"
)

// certX509GUID is EFI_CERT_X509_GUID, a5c059a1-94e4-4aa7-87b5-ab155c2bf072,
// in the wire layout (the first three fields little-endian).
var certX509GUID = guid(0xa5c059a1, 0x94e4, 0x4aa7, [8]byte{0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72})

// Owner is the SignatureOwner GUID ironrack writes,
// 6f1c8a1e-1b0e-4a4e-9d0a-69726f6e7261 ("ironra" in its last bytes).
var Owner = guid(0x6f1c8a1e, 0x1b0e, 0x4a4e, [8]byte{0x9d, 0x0a, 0x69, 0x72, 0x6f, 0x6e, 0x72, 0x61})

func guid(a uint32, b, c uint16, d [8]byte) [16]byte {
	var g [16]byte
	binary.LittleEndian.PutUint32(g[0:4], a)
	binary.LittleEndian.PutUint16(g[4:6], b)
	binary.LittleEndian.PutUint16(g[6:8], c)
	copy(g[8:], d[:])
	return g
}

// SignatureList encodes certs (DER) as EFI signature lists, one
// EFI_SIGNATURE_LIST of type EFI_CERT_X509_GUID per certificate (their
// sizes differ), each with one EFI_SIGNATURE_DATA owned by Owner.
func SignatureList(certs []*x509.Certificate) ([]byte, error) {
	if len(certs) == 0 {
		return nil, errors.New("efi: no certificates")
	}
	var b bytes.Buffer
	for _, c := range certs {
		der := c.Raw
		sigSize := 16 + len(der)
		listSize := 16 + 4 + 4 + 4 + sigSize
		b.Write(certX509GUID[:])
		binary.Write(&b, binary.LittleEndian, uint32(listSize))
		binary.Write(&b, binary.LittleEndian, uint32(0)) // SignatureHeaderSize
		binary.Write(&b, binary.LittleEndian, uint32(sigSize))
		b.Write(Owner[:])
		b.Write(der)
	}
	return b.Bytes(), nil
}

// ParsePEM reads the CA certificates of a PEM file's text (name is for
// errors, which say FILE:LINE). Every block must be a CERTIFICATE.
func ParsePEM(name string, data []byte) ([]*x509.Certificate, error) {
	certs, err := pemcert.Parse(name, data, "the CA certificates, PEM")
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate in it", name)
	}
	return certs, nil
}
