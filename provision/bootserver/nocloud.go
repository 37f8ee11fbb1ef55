package bootserver

import (
	"fmt"
	"strings"

	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
)

// RenderNoCloud renders one NoCloud file ("meta-data", "user-data",
// "vendor-data") of machine id's deploy, served by the boot server at
// baseURL (where the first boot reports its host keys). vendor-data is
// empty; an unknown file is an error. Only user-data carries the secrets
// and the host-key token.
func RenderNoCloud(id string, spec *inventory.DeploySpec, secrets inventory.AgentSecrets, baseURL, file string) ([]byte, error) {
	return renderSeed(id, provision.NoCloudSeed(id, spec, secrets, baseURL), file)
}

// renderSeed renders one NoCloud file of seed (see RenderNoCloud).
func renderSeed(id string, seed images.Seed, file string) ([]byte, error) {
	if file == "vendor-data" {
		return []byte{}, nil
	}
	if file != "meta-data" && file != "user-data" {
		return nil, fmt.Errorf("nocloud: no file %q", file)
	}
	meta, user, err := images.NoCloud(seed)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", id, err)
	}
	if file == "meta-data" {
		return meta, nil
	}
	return user, nil
}

// NoCloudCmdline is the kernel command line fragment that points the
// deployed OS's cloud-init at its deploy's seed on the boot server
// (images.NoCloudCmdline: ds=nocloud-net;s=<base>/nocloud/<token>/).
func NoCloudCmdline(baseURL, token string) string {
	s, err := images.NoCloudCmdline(strings.TrimRight(baseURL, "/") + "/nocloud/" + token + "/")
	if err != nil {
		return ""
	}
	return s
}
