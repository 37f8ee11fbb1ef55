// Package ipxe owns the boot decision: for every network boot, which of the
// agent (in which mode), the deployed OS, the local disk, or nothing a
// machine boots, as a pure function of its lifecycle state and facts, and
// the iPXE script that carries it out.
//
// Machines stay set to boot from the network first, and this decision is
// made on every boot, so a deployed machine never re-images by accident: only
// the states that ask for the agent boot it.
package ipxe

import (
	"fmt"
	"net/url"
	"strings"
)

// Lifecycle states, as the inventory names them, plus StateUnknown for a
// MAC the inventory does not know.
const (
	StateUnknown             = "unknown"
	StateNew                 = "new"
	StateCommissioning       = "commissioning"
	StateReady               = "ready"
	StateAllocated           = "allocated"
	StateDeploying           = "deploying"
	StateDeployed            = "deployed"
	StateReleasing           = "releasing"
	StateFailedCommissioning = "failed_commissioning"
	StateFailedDeployment    = "failed_deployment"
	StateFailedReleasing     = "failed_releasing"
	StateBroken              = "broken"
	StateRetired             = "retired"
)

// Image is a bootable image's files, inside DATA/images/<Name>/<Version>/.
type Image struct {
	Name, Version string
	// Kernel and Initrd are file names in the image's directory. An empty
	// Kernel means the image installed a bootloader: boot the local disk.
	Kernel, Initrd string
	// Cmdline is the kernel command line, including its root= on the
	// local disk, e.g. "root=LABEL=ironrack-root ro console=ttyS0".
	Cmdline string
}

// Machine is the view of one machine that the boot decision needs. The
// inventory (through an adapter) fills it in.
type Machine struct {
	// ID is the inventory's machine ID; empty for an unknown MAC.
	ID string
	// MAC is the booting interface's address, as aa:bb:cc:dd:ee:ff.
	MAC string
	// State is one of the State constants.
	State string
	// Image is the deployed or to-be-deployed image.
	Image Image
	// Token authenticates this boot's agent to the agent API. The
	// inventory mints a new one per boot; empty for an unknown MAC.
	Token string
	// Erase is a wipe's erase level (ironrack.erase=); empty: the agent's
	// default, quick.
	Erase string
}

// Action is what a machine boots.
type Action string

const (
	// ActionAgent boots the agent (discovery environment) in Decision.Mode.
	ActionAgent Action = "agent"
	// ActionOS boots the deployed image's kernel, root on the local disk.
	ActionOS Action = "os"
	// ActionLocalDisk hands over to the local disk's bootloader.
	ActionLocalDisk Action = "local-disk"
	// ActionExit boots nothing: iPXE exits.
	ActionExit Action = "exit"
)

// Agent modes, passed to the agent as ironrack.mode=.
const (
	ModeDiscover   = "discover"
	ModeCommission = "commission"
	ModeStandby    = "standby"
	ModeDeploy     = "deploy"
	ModeWipe       = "wipe"
)

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	// Mode is the agent's mode when Action is ActionAgent.
	Mode string
	// Why is one line for the script's comment and the boot log.
	Why string
}

// Decide is the boot decision. It is pure:
//
//	unknown, new          -> agent, discover (it powers off when done)
//	commissioning         -> agent, commission (it powers off when done)
//	ready, allocated      -> agent, standby
//	deploying             -> agent, deploy
//	deployed              -> the image's kernel, or the local disk if the image has none
//	releasing             -> agent, wipe
//	failed_*, broken,
//	retired, anything else -> exit: nothing boots
func Decide(m Machine) Decision {
	agent := func(mode string) Decision {
		return Decision{Action: ActionAgent, Mode: mode, Why: fmt.Sprintf("state %s: agent in %s mode", m.State, mode)}
	}
	switch m.State {
	case StateUnknown, StateNew:
		return agent(ModeDiscover)
	case StateCommissioning:
		return agent(ModeCommission)
	case StateReady, StateAllocated:
		return agent(ModeStandby)
	case StateDeploying:
		return agent(ModeDeploy)
	case StateReleasing:
		return agent(ModeWipe)
	case StateDeployed:
		if m.Image.Kernel == "" || m.Image.Name == "" || m.Image.Version == "" {
			return Decision{Action: ActionLocalDisk, Why: "state deployed: boot the local disk"}
		}
		return Decision{Action: ActionOS, Why: fmt.Sprintf("state deployed: image %s/%s with root on the local disk", m.Image.Name, m.Image.Version)}
	case StateFailedCommissioning, StateFailedDeployment, StateFailedReleasing:
		return Decision{Action: ActionExit, Why: fmt.Sprintf("state %s: nothing boots; the failure is in the history", m.State)}
	case StateBroken, StateRetired:
		return Decision{Action: ActionExit, Why: fmt.Sprintf("state %s: nothing boots", m.State)}
	}
	return Decision{Action: ActionExit, Why: fmt.Sprintf("unrecognised state %q: nothing boots", m.State)}
}

// Env is where the scripts point.
type Env struct {
	// BaseURL is the boot HTTP server, e.g. "http://192.0.2.1:8080". Required.
	BaseURL string
	// Agent is the discovery environment. If Agent.Name is empty, the
	// image "agent" version "current" with files "vmlinuz" and "initrd.img"
	// (DATA/images/agent/current/).
	Agent Image
	// AgentCmdline is added to every agent command line. If empty,
	// "console=tty0 console=ttyS0,115200n8 no_timer_check": the consoles,
	// and no test of the legacy timer's IO-APIC routing, which a busy
	// virtual machine can fail ("IO-APIC + timer doesn't work!", a panic
	// seen twice under TCG on a loaded host) and which machines whose
	// clock is the TSC or HPET never need.
	AgentCmdline string
}

func (e Env) withDefaults() Env {
	e.BaseURL = strings.TrimRight(e.BaseURL, "/")
	if e.Agent.Name == "" {
		e.Agent = Image{Name: "agent", Version: "current", Kernel: "vmlinuz", Initrd: "initrd.img"}
	}
	if e.AgentCmdline == "" {
		e.AgentCmdline = "console=tty0 console=ttyS0,115200n8 no_timer_check"
	}
	return e
}

// ImagePath is the URL path of a file of an image on the boot HTTP server,
// each segment escaped.
func ImagePath(name, version, file string) string {
	return "/images/" + url.PathEscape(name) + "/" + url.PathEscape(version) + "/" + url.PathEscape(file)
}

// Script renders the iPXE script for m's boot. It is Render(Decide(m)).
func Script(m Machine, env Env) string {
	return Render(Decide(m), m, env)
}

// Render writes the iPXE script that carries out d for m.
func Render(d Decision, m Machine, env Env) string {
	env = env.withDefaults()
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	fmt.Fprintf(&b, "# ironrack: machine %s mac %s: %s\n", orDash(clean(m.ID)), orDash(clean(m.MAC)), clean(d.Why))
	switch d.Action {
	case ActionAgent:
		img := env.Agent
		args := []string{
			"ironrack.mode=" + d.Mode,
			"ironrack.url=" + clean(env.BaseURL),
		}
		if m.ID != "" {
			args = append(args, "ironrack.machine="+clean(m.ID))
		}
		if m.Token != "" {
			args = append(args, "ironrack.token="+clean(m.Token))
		}
		if m.MAC != "" {
			args = append(args, "ironrack.mac="+clean(m.MAC))
		}
		if d.Mode == ModeWipe && m.Erase != "" {
			args = append(args, "ironrack.erase="+clean(m.Erase))
		}
		args = append(args, clean(env.AgentCmdline))
		bootKernel(&b, env.BaseURL, img, strings.Join(args, " "))
	case ActionOS:
		bootKernel(&b, env.BaseURL, m.Image, clean(m.Image.Cmdline))
	case ActionLocalDisk:
		b.WriteString("echo ironrack: booting the local disk\n")
		b.WriteString("iseq ${platform} efi && exit 0 ||\n")
		b.WriteString("sanboot --no-describe --drive 0x80 || exit 0\n")
	default:
		fmt.Fprintf(&b, "echo ironrack: %s\n", clean(d.Why))
		b.WriteString("exit\n")
	}
	return b.String()
}

func bootKernel(b *strings.Builder, base string, img Image, cmdline string) {
	dir := func(f string) string { return clean(base + ImagePath(img.Name, img.Version, f)) }
	if img.Initrd != "" {
		// The EFI stub finds the initrd by this name; BIOS kernels ignore it.
		cmdline = "initrd=" + initrdName(img) + " " + cmdline
	}
	fmt.Fprintf(b, "kernel %s %s\n", dir(img.Kernel), strings.TrimSpace(cmdline))
	if img.Initrd != "" {
		fmt.Fprintf(b, "initrd --name %s %s\n", initrdName(img), dir(img.Initrd))
	}
	b.WriteString("boot || goto failed\n")
	b.WriteString(":failed\n")
	b.WriteString("echo ironrack: boot failed; returning to the firmware\n")
	b.WriteString("exit 1\n")
}

func initrdName(img Image) string {
	if img.Initrd == "" {
		return ""
	}
	return "initrd.img"
}

// clean keeps inventory data from breaking out of its script line: control
// characters (newlines first of all) become spaces.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
