package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
	"github.com/urfave/cli/v2"
)

// bmcRoots reads --bmc-ca-file, the site's CA for Redfish BMC
// certificates; nil (the system's roots) when it is not given.
func bmcRoots(c *cli.Context) (*x509.CertPool, error) {
	file := c.String("bmc-ca-file")
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--bmc-ca-file: %w", err)
	}
	return parseCAFile(file, data)
}

// parseCAFile reads every PEM certificate in data; a block that is not a
// certificate, or does not parse, is an error naming FILE:LINE.
func parseCAFile(file string, data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	rest := data
	for {
		start := len(data) - len(rest)
		block, next := pem.Decode(rest)
		if block == nil {
			break
		}
		// the line where this block's BEGIN is
		begin := bytes.Index(rest, []byte("-----BEGIN"))
		line := 1 + bytes.Count(data[:start+begin], []byte("\n"))
		rest = next
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s:%d: a %s block, want CERTIFICATE (the site's CA certificates, PEM)", file, line, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: certificate: %w", file, line, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s:1: no PEM certificate (want the site's CA certificates, -----BEGIN CERTIFICATE-----)", file)
	}
	return pool, nil
}

// pinAsker asks the operator to confirm one certificate's fingerprint: yes,
// no, or an error when nobody can be asked.
type pinAsker func(question string) (bool, error)

// resolvePins replaces each row's bmc_tls "pin" with the fingerprint of the
// certificate its BMC presents now, once ask confirms it. Every problem
// (unreachable BMC, refused fingerprint, nobody to ask) is reported with
// FILE:LINE, and then nothing is imported.
func resolvePins(ctx context.Context, file string, rows []inventory.SheetRow, timeout time.Duration, ask pinAsker) error {
	var errs inventory.SheetErrors
	for i := range rows {
		r := &rows[i]
		if r.BMCTLS != inventory.TLSPinAtImport {
			continue
		}
		bad := func(format string, a ...any) {
			errs = append(errs, &inventory.LineError{File: file, Line: r.Line, Column: "bmc_tls", Problem: fmt.Sprintf(format, a...)})
		}
		port := r.BMCPort
		if port == 0 {
			port = inventory.DefaultPort(r.BMCProtocol)
		}
		addr := net.JoinHostPort(r.BMCAddress, strconv.Itoa(port))
		fctx, cancel := context.WithTimeout(ctx, timeout)
		cert, err := ipmi.FetchCertificate(fctx, r.BMCAddress, port)
		cancel()
		if err != nil {
			bad("pin: %v", err)
			continue
		}
		fp := ipmi.Fingerprint(cert)
		q := fmt.Sprintf("%s:%d: BMC %s presents a certificate\n  subject     %s\n  issuer      %s\n  valid until %s\n  fingerprint %s\nPin it (compare the fingerprint with the BMC's own console)? [y/N] ",
			file, r.Line, addr, cert.Subject, cert.Issuer, cert.NotAfter.UTC().Format(time.RFC3339), fp)
		ok, err := ask(q)
		switch {
		case err != nil:
			bad("pin: BMC %s presents %s; %v: check it against the BMC's own console, then write it in the bmc_tls column", addr, fp, err)
		case !ok:
			bad("pin: fingerprint %s of BMC %s not confirmed", fp, addr)
		default:
			r.BMCTLS = fp
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// errNoTerminal: a pin needs a person to confirm it.
var errNoTerminal = errors.New("not a terminal, so nobody confirmed it")

// askPin asks on the terminal; elsewhere it refuses.
func (e *env) askPin(question string) (bool, error) {
	if !isTerminal(e.stdin) || !isTerminal(e.stderr) {
		return false, errNoTerminal
	}
	fmt.Fprint(e.stderr, question)
	line, _ := bufio.NewReader(e.stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
