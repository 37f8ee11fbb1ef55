package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/ironrack/ironrack/provision/efi"
)

// efiCACertsCommand is `ironrack efi-cacerts`: the site's CA in the form
// EDK2 takes for HTTPS boot.
func efiCACertsCommand(_ *env) *cli.Command {
	return &cli.Command{
		Name:      "efi-cacerts",
		Usage:     "write CA certificates (PEM) as the EFI signature list EDK2 trusts for HTTPS boot",
		UsageText: "ironrack efi-cacerts --ca CA.pem --out cacerts.esl",
		Description: "The file goes to QEMU/OVMF as -fw_cfg name=etc/edk2/https/cacerts,file=cacerts.esl, or is enrolled\n" +
			"in the firmware's TLS certificate setup. See docs/boot-server.md (HTTPS boot).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ca", Usage: "the CA certificates, PEM (required)"},
			&cli.StringFlag{Name: "out", Usage: "the signature list to write (required)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("efi-cacerts: unexpected argument %q (all settings are flags)", c.Args().First())
			}
			in, out := c.String("ca"), c.String("out")
			if in == "" || out == "" {
				return errors.New("efi-cacerts: --ca and --out are required")
			}
			data, err := os.ReadFile(in)
			if err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
			certs, err := efi.ParsePEM(in, data)
			if err != nil {
				return err
			}
			esl, err := efi.SignatureList(certs)
			if err != nil {
				return err
			}
			tmp, err := os.CreateTemp(filepath.Dir(out), ".efi-cacerts-*")
			if err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			defer os.Remove(tmp.Name())
			if _, err := tmp.Write(esl); err != nil {
				tmp.Close()
				return fmt.Errorf("--out %s: %w", out, err)
			}
			if err := tmp.Close(); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			if err := os.Chmod(tmp.Name(), 0o644); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			fmt.Fprintf(c.App.Writer, "%s: %d certificate(s), %d bytes\n", out, len(certs), len(esl))
			return nil
		},
	}
}
