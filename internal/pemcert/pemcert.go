// Package pemcert reads the certificates of a PEM file's text with errors
// an operator can act on: each names the file and the line of the block
// (FILE:LINE).
package pemcert

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// Parse returns every certificate in data, in order; name is the file's
// name for errors. Every block must be a CERTIFICATE (want says what the
// file should hold, in the error for another block), must parse, and text
// that starts a PEM block but does not decode is a malformed block. Text
// around the blocks is ignored. No block at all is no certificates and no
// error: the caller words that refusal.
func Parse(name string, data []byte, want string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		line := 1 + bytes.Count(data[:len(data)-len(rest)], []byte("\n"))
		// The block starts after any text before it.
		if i := bytes.Index(rest, []byte("-----BEGIN")); i > 0 {
			line += bytes.Count(rest[:i], []byte("\n"))
		}
		block, r := pem.Decode(rest)
		if block == nil {
			if bytes.Contains(rest, []byte("-----BEGIN")) {
				return nil, fmt.Errorf("%s:%d: malformed PEM block", name, line)
			}
			return certs, nil
		}
		rest = r
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s:%d: a %s block, want CERTIFICATE (%s)", name, line, block.Type, want)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: certificate: %w", name, line, err)
		}
		certs = append(certs, c)
	}
}
