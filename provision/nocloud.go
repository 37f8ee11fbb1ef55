package provision

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/inventory"
)

// NoCloudSeed is the cloud-init seed of machine id's deploy: instance-id
// (the machine ID and the deploy's start, so a redeploy is a new instance),
// the host name, root's SSH keys, the role, the Consul join address with
// how to join that cluster (datacenter and secrets), the services
// (SeedService), the first boot's host-key report (while the deploy's
// host-key token is unused, to baseURL + wire.HostKeysPath; none if baseURL
// is empty) and the operator's user-data, rendered by images.NoCloud.
func NoCloudSeed(id string, spec *inventory.DeploySpec, secrets inventory.AgentSecrets, baseURL string) images.Seed {
	s := images.Seed{
		InstanceID:        fmt.Sprintf("%s-%d", id, spec.RequestedAt.Unix()),
		Hostname:          spec.Hostname,
		SSHAuthorizedKeys: spec.SSHKeys,
		MachineID:         id,
		Role:              spec.Role,
	}
	if spec.ConsulJoin != "" {
		s.ConsulJoin = []string{spec.ConsulJoin}
		s.ConsulDatacenter = secrets.Datacenter
		s.ConsulGossipKey, s.ConsulToken, s.ConsulCACert = secrets.GossipKey, secrets.Token, secrets.CACert
	}
	for _, svc := range spec.Services {
		s.Services = append(s.Services, SeedService(svc))
	}
	if baseURL != "" && spec.HostKeyToken != "" {
		s.HostKeysURL = strings.TrimRight(baseURL, "/") + wire.HostKeysPath
		s.HostKeysToken = spec.HostKeyToken
	}
	if spec.UserData != "" {
		s.ExtraUserData, s.ExtraUserDataName = []byte(spec.UserData), "user-data"
	}
	return s
}

// SeedService is a deploy spec's service as the deployed OS's Consul agent
// registers it: its check runs on the machine itself, against the port on
// 127.0.0.1 (a TCP connect, or GET http://127.0.0.1:PORT/PATH). An invalid
// check (the spec was validated) is left without one, which the tiers'
// health wait reports as "no health check".
func SeedService(svc inventory.DeployService) images.Service {
	out := images.Service{Name: svc.Name, Port: svc.Port}
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(svc.Port))
	switch kind, path, err := svc.CheckKind(); {
	case err != nil:
	case kind == "http":
		out.Check = &images.Check{HTTP: "http://" + target + path, Interval: svc.Interval}
	default:
		out.Check = &images.Check{TCP: target, Interval: svc.Interval}
	}
	return out
}
