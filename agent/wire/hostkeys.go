package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// HostKeysPath takes the deployed OS's one POSTed HostKeysReport,
// authenticated by its deploy's single-use host-key token (not a boot
// token), and answers a HostKeysReply. The client is the first-boot step
// images.NoCloud renders into the deploy's user-data.
const HostKeysPath = "/api/v1/host-keys"

// HostKeysReport is the deployed OS's SSH host public keys, as
// /etc/ssh/ssh_host_*_key.pub hold them ("TYPE BASE64 [comment]"). No
// private key ever travels.
type HostKeysReport struct {
	Keys []string `json:"keys"`
}

// HostKeysReply is the boot server's answer: a host certificate per key,
// in the keys' order ("TYPE-cert-v01@openssh.com BASE64"), when ironrack
// has an SSH CA; none otherwise.
type HostKeysReply struct {
	Certificates []string `json:"certificates"`
}

// Limits of a host-key report.
const (
	MaxHostKeys      = 8
	maxHostKeyLine   = 16 << 10
	MaxHostKeyReport = 64 << 10
)

// hostKeyTypes are the key types a host key may have (OpenSSH's host key
// types; DSA is long gone).
var hostKeyTypes = map[string]bool{
	"ssh-ed25519": true, "ssh-rsa": true,
	"ecdsa-sha2-nistp256": true, "ecdsa-sha2-nistp384": true, "ecdsa-sha2-nistp521": true,
	"sk-ssh-ed25519@openssh.com": true, "sk-ecdsa-sha2-nistp256@openssh.com": true,
}

// ParseHostKeysReport reads a report strictly: one JSON object with only
// "keys", 1 to MaxHostKeys lines, each "TYPE BASE64 [comment]" with a host
// key type, the base64 a key blob of that type, each type once. It returns
// the keys as "TYPE BASE64" (comments dropped). The boot server parses the
// keys themselves again (x/crypto/ssh) before recording them.
func ParseHostKeysReport(r io.Reader) (HostKeysReport, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxHostKeyReport+1))
	if err != nil {
		return HostKeysReport{}, fmt.Errorf("read host keys: %w", err)
	}
	if len(b) > MaxHostKeyReport {
		return HostKeysReport{}, fmt.Errorf("host keys: report larger than %d bytes", MaxHostKeyReport)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var rep HostKeysReport
	if err := dec.Decode(&rep); err != nil {
		return HostKeysReport{}, fmt.Errorf("host keys: decode: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return HostKeysReport{}, errors.New("host keys: trailing data after the JSON object")
	}
	if len(rep.Keys) == 0 || len(rep.Keys) > MaxHostKeys {
		return HostKeysReport{}, fmt.Errorf("host keys: %d keys, want 1 to %d", len(rep.Keys), MaxHostKeys)
	}
	out := HostKeysReport{Keys: make([]string, 0, len(rep.Keys))}
	seen := map[string]bool{}
	for i, line := range rep.Keys {
		typ, blob, err := hostKeyLine(line)
		if err != nil {
			return HostKeysReport{}, fmt.Errorf("host keys: key %d: %w", i+1, err)
		}
		if seen[typ] {
			return HostKeysReport{}, fmt.Errorf("host keys: key %d: a second %s key", i+1, typ)
		}
		seen[typ] = true
		out.Keys = append(out.Keys, typ+" "+blob)
	}
	return out, nil
}

// hostKeyLine checks one "TYPE BASE64 [comment]" line.
func hostKeyLine(line string) (typ, blob string, err error) {
	if len(line) > maxHostKeyLine {
		return "", "", fmt.Errorf("%d bytes, at most %d", len(line), maxHostKeyLine)
	}
	if strings.ContainsAny(line, "\r\n\x00") {
		return "", "", errors.New("spans lines")
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return "", "", errors.New("want TYPE BASE64 [comment]")
	}
	typ, blob = f[0], f[1]
	if !hostKeyTypes[typ] {
		return "", "", fmt.Errorf("type %.40q is not a host key type", typ)
	}
	raw, err := base64.StdEncoding.DecodeString(blob)
	if err != nil {
		return "", "", fmt.Errorf("%s key: base64: %v", typ, err)
	}
	// An SSH key blob starts with its type as a string (RFC 4253 6.6).
	if len(raw) < 4 {
		return "", "", fmt.Errorf("%s key: blob too short", typ)
	}
	n := binary.BigEndian.Uint32(raw)
	if uint64(n) > uint64(len(raw)-4) || string(raw[4:4+n]) != typ {
		return "", "", fmt.Errorf("%s key: the blob is not a %s key", typ, typ)
	}
	return typ, base64.StdEncoding.EncodeToString(raw), nil
}
