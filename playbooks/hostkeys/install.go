package hostkeys

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/inventory"
)

// A certificate signed after first boot (ssh-keys sign, renew) reaches its
// host over SSH, checked strictly like any other login: InstallScript is
// what runs there, Install runs it.

// DefaultReload makes Debian's sshd read its certificates again. A reload
// (SIGHUP) keeps sshd listening and leaves sessions alone.
const DefaultReload = "sshd -t && systemctl reload ssh"

// CertConf is the sshd drop-in, relative to the ssh directory, that names
// the certificates: the file the first boot writes (images.HostCertConf).
const CertConf = images.HostCertConf

// KeyFileType is the TYPE of ssh_host_TYPE_key for a key type.
func KeyFileType(t string) string {
	switch {
	case t == ssh.KeyAlgoED25519:
		return "ed25519"
	case strings.HasPrefix(t, "ecdsa-"):
		return "ecdsa"
	case t == ssh.KeyAlgoRSA:
		return "rsa"
	}
	return strings.NewReplacer("@", "_", ".", "_").Replace(t)
}

var safeDir = regexp.MustCompile(`^/[A-Za-z0-9._/-]*$`)

// CertFiles are a machine's certificate files as its host keeps them, by
// name relative to the ssh directory dir: ssh_host_TYPE_key-cert.pub per
// key and CertConf naming them.
func CertFiles(dir string, keys, certs []string) (map[string]string, error) {
	if len(certs) != len(keys) || len(keys) == 0 {
		return nil, fmt.Errorf("%d certificates for %d keys", len(certs), len(keys))
	}
	files := map[string]string{}
	conf := "# ironrack: host certificates signed by ironrack's SSH CA\n"
	for i, l := range keys {
		k, _, err := inventory.ParseHostKey(l)
		if err != nil {
			return nil, fmt.Errorf("host key %d: %w", i+1, err)
		}
		ck, _, _, _, err := ssh.ParseAuthorizedKey([]byte(certs[i]))
		c, ok := ck.(*ssh.Certificate)
		if err != nil || !ok || !bytes.Equal(c.Key.Marshal(), k.Marshal()) {
			return nil, fmt.Errorf("certificate %d does not certify host key %d", i+1, i+1)
		}
		name := "ssh_host_" + KeyFileType(k.Type()) + "_key-cert.pub"
		files[name] = inventory.CanonicalKey(c) + "\n"
		conf += "HostCertificate " + path.Join(dir, name) + "\n"
	}
	files[CertConf] = conf
	return files, nil
}

// InstallScript is the sh script that installs a machine's certificates in
// dir (each file written beside its place, then renamed over it) and then
// runs reload (empty: none).
func InstallScript(dir, reload string, keys, certs []string) (string, error) {
	if !safeDir.MatchString(dir) {
		return "", fmt.Errorf("ssh directory %q: want an absolute path of letters, digits and ._/-", dir)
	}
	files, err := CertFiles(dir, keys, certs)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("set -e\numask 022\n")
	fmt.Fprintf(&b, "mkdir -p %s\n", path.Join(dir, path.Dir(CertConf)))
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := path.Join(dir, n)
		// Certificates are base64 and comments: the quoted here-document
		// delimiter never occurs in them.
		fmt.Fprintf(&b, "cat > %s.ironrack-new <<'IRONRACK_EOF'\n%sIRONRACK_EOF\nmv -f %s.ironrack-new %s\n", p, files[n], p, p)
	}
	if reload != "" {
		b.WriteString(reload + "\n")
	}
	return b.String(), nil
}

// Runner runs a command on one host; *remote.Client (playbooks/remote)
// is one, logged in with a strict host key check (Trust's).
type Runner interface {
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (exit int, err error)
}

// Install runs script (InstallScript) on the host r is logged in to. Its
// output comes back in the error when it fails. It gives up when ctx is
// done.
func Install(ctx context.Context, r Runner, script string) error {
	var stdout, stderr bytes.Buffer
	exit, err := r.Run(ctx, "sh -s", strings.NewReader(script), &stdout, &stderr)
	if err != nil {
		return err
	}
	if exit != 0 {
		if msg := strings.TrimSpace(stderr.String() + stdout.String()); msg != "" {
			return fmt.Errorf("install script: exit status %d: %s", exit, msg)
		}
		return fmt.Errorf("install script: exit status %d", exit)
	}
	return nil
}
