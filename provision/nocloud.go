package provision

import (
	"fmt"
	"strings"

	"github.com/ironrack/ironrack/inventory"
)

// RenderNoCloud renders one NoCloud file of machine id's deploy:
//
//   - meta-data: instance-id (the machine ID and the deploy's start, so a
//     redeploy is a new instance) and local-hostname;
//   - user-data: ironrack's #cloud-config (hostname, the SSH keys for the
//     default user and root, the role, the Consul join address), or, when
//     the operator gave user-data, a MIME multipart of ironrack's part and
//     the operator's, so cloud-init applies both;
//   - vendor-data: empty.
//
// An unknown file is an error.
func RenderNoCloud(id string, spec *inventory.DeploySpec, file string) ([]byte, error) {
	switch file {
	case "meta-data":
		return fmt.Appendf(nil, "instance-id: %s-%d\nlocal-hostname: %s\n", id, spec.RequestedAt.Unix(), spec.Hostname), nil
	case "vendor-data":
		return []byte{}, nil
	case "user-data":
		own := cloudConfig(spec)
		if strings.TrimSpace(spec.UserData) == "" {
			return []byte(own), nil
		}
		const boundary = "==ironrack-nocloud=="
		var b strings.Builder
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\nMIME-Version: 1.0\n\n", boundary)
		for _, part := range []string{own, spec.UserData} {
			ct := "text/cloud-config"
			if strings.HasPrefix(part, "#!") {
				ct = "text/x-shellscript"
			}
			fmt.Fprintf(&b, "--%s\nContent-Type: %s; charset=\"utf-8\"\nMIME-Version: 1.0\n\n%s\n", boundary, ct, strings.TrimRight(part, "\n"))
		}
		fmt.Fprintf(&b, "--%s--\n", boundary)
		return []byte(b.String()), nil
	}
	return nil, fmt.Errorf("nocloud: no file %q", file)
}

// cloudConfig is ironrack's own #cloud-config for a deploy. Values are
// quoted as YAML strings (they are validated by DeploySpec.Validate).
func cloudConfig(spec *inventory.DeploySpec) string {
	var b strings.Builder
	b.WriteString("#cloud-config\n")
	fmt.Fprintf(&b, "hostname: %q\npreserve_hostname: false\nmanage_etc_hosts: true\n", spec.Hostname)
	// Debian's image has no locales package; cloud-init's locale module
	// would fail without it.
	b.WriteString("locale: false\n")
	if len(spec.SSHKeys) > 0 {
		b.WriteString("disable_root: false\nssh_authorized_keys:\n")
		for _, k := range spec.SSHKeys {
			fmt.Fprintf(&b, "  - %q\n", k)
		}
	}
	var files []string
	if spec.Role != "" {
		files = append(files, fmt.Sprintf("  - path: /etc/ironrack/role\n    content: %q\n", spec.Role+"\n"))
	}
	if spec.ConsulJoin != "" {
		files = append(files, fmt.Sprintf("  - path: /etc/ironrack/consul-join\n    content: %q\n", spec.ConsulJoin+"\n"))
	}
	if len(files) > 0 {
		b.WriteString("write_files:\n" + strings.Join(files, ""))
	}
	return b.String()
}
