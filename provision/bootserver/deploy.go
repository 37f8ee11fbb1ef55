package bootserver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/ironrack/ironrack/agent/wire"
	"github.com/ironrack/ironrack/images"
	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/provision"
	"github.com/ironrack/ironrack/provision/httpboot"
	"github.com/ironrack/ironrack/provision/ipxe"
)

// This file is the boot server's side of deploy and release: the agent's
// deploy instructions, the NoCloud seed, the deployed OS's boot, and the
// agent's deploy and wipe events, which end those workflows in the
// inventory.

// manifest reads DATA/images/<name>/<version>/manifest.json: the files this
// boot server serves, with their sizes and sums.
func (a *Backend) manifest(name, version string) (images.Manifest, error) {
	if a.DataDir == "" || !safeSegment(name) || !safeSegment(version) || name == "" || version == "" {
		return images.Manifest{}, fmt.Errorf("image %s/%s: not on this boot server", name, version)
	}
	m, err := images.ReadManifest(images.Dir(a.DataDir, name, version))
	if err != nil {
		return images.Manifest{}, fmt.Errorf("image %s/%s: %w", name, version, err)
	}
	return m, nil
}

// DeployInstructions implements httpboot.Deploys: the root image of the
// machine's deploy spec, with its sha256 and size from the version's
// manifest on this boot server. A spec with a root-disk hint gives the
// agent the disks the hint chose (wire.Hint) and the record's disks, which
// the agent checks against what it sees.
func (a *Backend) DeployInstructions(ctx context.Context, id string) (wire.Instructions, error) {
	m, err := a.Store.Get(ctx, id)
	if err != nil {
		return wire.Instructions{}, err
	}
	if m.State != inventory.StateDeploying {
		return wire.Instructions{}, fmt.Errorf("machine %s is %s: %w", id, m.State, httpboot.ErrNoDeploy)
	}
	spec, err := a.Store.Deploy(ctx, id)
	if errors.Is(err, inventory.ErrNotFound) {
		return wire.Instructions{}, fmt.Errorf("machine %s has no deploy spec: %w", id, httpboot.ErrNoDeploy)
	}
	if err != nil {
		return wire.Instructions{}, err
	}
	man, err := a.manifest(spec.Image, spec.ImageVersion)
	if err != nil {
		return wire.Instructions{}, fmt.Errorf("machine %s: %w: %w", id, err, httpboot.ErrNoDeploy)
	}
	if man.Root == "" {
		return wire.Instructions{}, fmt.Errorf("machine %s: image %s/%s has no root image: %w", id, spec.Image, spec.ImageVersion, httpboot.ErrNoDeploy)
	}
	for _, f := range man.Files {
		if f.Name == man.Root {
			in := wire.Instructions{
				Image: spec.Image, Version: spec.ImageVersion,
				URL:    ipxe.ImagePath(spec.Image, spec.ImageVersion, f.Name),
				SHA256: f.SHA256, Size: f.Size,
				Disk: wire.DiskRule{Rule: wire.FirstFit, MinBytes: f.Size},
			}
			if spec.RootDisk != "" {
				in.Disk = wire.DiskRule{Rule: wire.Hint, MinBytes: f.Size, Hint: spec.RootDisk, Layout: spec.RootLayout,
					Disks: wireDisks(spec.RootDisks), Known: wireDisks(m.Disks)}
			}
			if err := in.Validate(); err != nil {
				return wire.Instructions{}, fmt.Errorf("machine %s: %w: %w", id, err, httpboot.ErrNoDeploy)
			}
			return in, nil
		}
	}
	return wire.Instructions{}, fmt.Errorf("machine %s: image %s/%s lists no file %s: %w", id, spec.Image, spec.ImageVersion, man.Root, httpboot.ErrNoDeploy)
}

// wireDisks are ds as the agent API carries them.
func wireDisks(ds []inventory.Disk) []wire.Disk {
	out := make([]wire.Disk, len(ds))
	for i, d := range ds {
		out[i] = wire.Disk{Name: d.Name, SizeBytes: uint64(max(d.SizeBytes, 0)), Serial: d.Serial, Model: d.Model, Rotational: d.Rotational, WWN: d.WWN}
	}
	return out
}

// NoCloud implements httpboot.Deploys: the deploy spec's NoCloud files.
func (a *Backend) NoCloud(ctx context.Context, token, file string) ([]byte, bool, error) {
	id, spec, err := a.Store.DeployByToken(ctx, token)
	switch {
	case errors.Is(err, inventory.ErrToken):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	var secrets inventory.AgentSecrets
	if file == "user-data" && spec.ConsulJoin != "" {
		// How the agent joins the cluster (datacenter, gossip key, token,
		// CA), opened with this boot server's key file: a failure is the
		// operator's to fix (503 and logged; cloud-init retries), not a
		// seed whose agent cannot join.
		if secrets, err = a.Store.AgentSecrets(ctx); err != nil {
			return nil, false, fmt.Errorf("machine %s: %w", id, err)
		}
		if secrets.Datacenter == "" {
			if secrets.Datacenter, err = a.Store.Datacenter(ctx); err != nil {
				return nil, false, fmt.Errorf("machine %s: %w", id, err)
			}
		}
	}
	// The first boot reports its host keys to the boot server at the
	// address family it has: an IPv6-only machine has no IPv4 route to
	// BaseURL. Its Consul agent binds its recorded IPv6 address: the
	// image's default bind template takes the first IPv4 one.
	m, err := a.Store.Get(ctx, id)
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return nil, false, fmt.Errorf("machine %s: %w", id, err)
	}
	base, v6 := a.baseFor(m)
	seed := provision.NoCloudSeed(id, spec, secrets, base)
	if v6 && len(seed.ConsulJoin) > 0 {
		seed.ConsulBind = m.IP
	}
	b, err := renderSeed(id, seed, file)
	if err != nil {
		a.log().Warn("bootserver: nocloud", "machine", id, "file", file, "err", err)
		return nil, false, nil
	}
	return b, true, nil
}

// deployedImage is a deployed machine's image from its deploy spec, with
// the NoCloud seed on its kernel command line; without a spec, the image
// tags (image, image_version) name it as before the deploy workflow.
//
// An IPv6-only machine (baseFor) gets the seed over IPv6, and the network
// config of its NIC mac (images.NetworkConfig6Cmdline): DHCPv6 only.
func (a *Backend) deployedImage(ctx context.Context, m *inventory.Machine, mac string) ipxe.Image {
	spec, err := a.Store.Deploy(ctx, m.ID)
	if err != nil {
		if !errors.Is(err, inventory.ErrNotFound) {
			a.log().Warn("bootserver: read deploy spec; booting by tags", "machine", m.ID, "err", err)
		}
		return a.image(m)
	}
	tagged := m.Clone()
	tagged.Tags[TagImage], tagged.Tags[TagImageVersion] = spec.Image, spec.ImageVersion
	img := a.image(tagged)
	base, v6 := a.baseFor(m)
	if img.Kernel != "" && base != "" {
		if frag := NoCloudCmdline(base, spec.NoCloudToken); frag != "" {
			img.Cmdline += " " + frag
		}
	}
	if img.Kernel != "" && v6 && mac != "" {
		// An IPv6-only machine: cloud-init's fallback network is DHCPv4
		// only, so its OS would never reach the seed.
		frag, err := images.NetworkConfig6Cmdline(mac)
		if err != nil {
			a.log().Warn("bootserver: IPv6 network config", "machine", m.ID, "err", err)
		} else {
			img.Cmdline += " " + frag
		}
	}
	return img
}

// baseFor is the boot server's base URL for machine m: BaseURL6, and v6
// true, when m is IPv6-only (its ip, from a DHCPv6 lease or the sheet, is
// IPv6) and the server has one, else BaseURL.
func (a *Backend) baseFor(m *inventory.Machine) (base string, v6 bool) {
	if a.BaseURL6 != "" && m != nil {
		if ip, err := netip.ParseAddr(m.IP); err == nil && ip.Is6() && !ip.Is4In6() {
			return a.BaseURL6, true
		}
	}
	return a.BaseURL, false
}

// recordEvent applies an agent event: deploy and wipe results end their
// workflows (deploying → deployed | failed_deployment, releasing → ready |
// failed_releasing); everything else is noted in the history. A result for
// a machine no longer in that state changes nothing and is noted.
func (a *Backend) recordEvent(ctx context.Context, id string, e *wire.Event) error {
	why := e.Status
	if e.Percent > 0 {
		why += fmt.Sprintf(" %d%%", e.Percent)
	}
	if e.Message != "" {
		why += ": " + e.Message
	}
	change := inventory.Change{What: "agent " + e.Phase, Why: "agent: " + why, Who: bootServer}
	var err error
	switch {
	case e.Phase == "deploy" && e.Status == "done":
		_, err = a.Store.FinishDeploy(ctx, id, nil, change)
	case e.Phase == "deploy" && e.Status == "failed":
		_, err = a.Store.FinishDeploy(ctx, id, errors.New("agent: deploy failed: "+e.Message), change)
	case e.Phase == "wipe" && e.Status == "done":
		_, err = a.Store.FinishRelease(ctx, id, nil, change)
	case e.Phase == "wipe" && e.Status == "failed":
		_, err = a.Store.FinishRelease(ctx, id, errors.New("agent: wipe failed: "+e.Message), change)
	default:
		return a.Store.NoteBoot(ctx, id, "agent "+e.Phase, why)
	}
	if errors.Is(err, inventory.ErrConflict) {
		a.log().Warn("bootserver: late agent result ignored", "machine", id, "phase", e.Phase, "status", e.Status, "err", err)
		return a.Store.NoteBoot(ctx, id, "agent "+e.Phase, why+" (ignored: "+err.Error()+")")
	}
	if err == nil {
		a.log().Info("bootserver: agent result", "machine", id, "phase", e.Phase, "status", e.Status, "message", e.Message)
	}
	return err
}
