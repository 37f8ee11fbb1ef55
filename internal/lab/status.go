package lab

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
)

// Status is a lab as `ironrack lab status` shows it.
type Status struct {
	Name string `json:"name"`
	// Dir is the state directory.
	Dir string `json:"dir"`
	// Up is true while the supervisor runs; Ready once the lab came up.
	Up         bool   `json:"up"`
	Ready      bool   `json:"ready"`
	Error      string `json:"error,omitempty"`
	Supervisor Proc   `json:"supervisor"`
	Subnet     string `json:"subnet"`
	NS         string `json:"netns"`
	HostLink   string `json:"host_link"`
	HostIP     string `json:"host_ip"`
	// Server is the bridge's address: Consul, the boot server, and the
	// address deployed machines' Consul agents join.
	Server  string `json:"server"`
	Consul  string `json:"consul"`
	Boot    string `json:"boot_url"`
	Sheet   string `json:"sheet"`
	KeyFile string `json:"key_file"`
	// BMCCAFile is the lab's CA for its Redfish BMCs' certificates; empty
	// when the lab has none.
	BMCCAFile string `json:"bmc_ca_file,omitempty"`
	DataDir   string `json:"data_dir"`
	// Processes are the lab's recorded processes, the latest per role.
	Processes []ProcStatus    `json:"processes"`
	Machines  []MachineStatus `json:"machines"`
}

// ProcStatus is one recorded process and whether it still runs.
type ProcStatus struct {
	Proc
	Alive bool `json:"alive"`
}

// MachineStatus is one machine: its layout, its BMC's process, the power
// its BMC reports (over IPMI or Redfish), its QEMU process and its inventory state.
type MachineStatus struct {
	Machine
	Firmware string `json:"firmware"`
	BMCPID   int    `json:"bmc_pid"`
	BMCAlive bool   `json:"bmc_alive"`
	// Power is "on" or "off" as the BMC answers, or why it did not.
	Power     string `json:"power"`
	VMPID     int    `json:"vm_pid,omitempty"`
	VMRunning bool   `json:"vm_running"`
	// State is the machine's lifecycle state in the lab's inventory, empty
	// if it is not imported (or Consul does not answer).
	State string `json:"state"`
}

// Info is what the lab's configuration says, without asking any process.
func Info(cfg Config, dir string) Status {
	l := cfg.Layout()
	ca := ""
	if cfg.Redfish > 0 {
		ca = filepath.Join(dir, BMCCAFile)
	}
	return Status{
		BMCCAFile: ca,
		Name:      cfg.Name, Dir: dir, Subnet: cfg.Subnet.String(), NS: l.NS, HostLink: l.HostLink, HostIP: l.HostIP.String(),
		Server:  l.Server.String(),
		Consul:  net.JoinHostPort(l.Server.String(), strconv.Itoa(ConsulPort)),
		Boot:    "http://" + net.JoinHostPort(l.Server.String(), strconv.Itoa(BootPort)),
		Sheet:   filepath.Join(dir, SheetFile),
		KeyFile: filepath.Join(dir, KeyFile),
		DataDir: cfg.DataDir,
	}
}

// Env is the shell exports of a lab, in order: what an operator's shell
// or a script needs to drive it.
func (s Status) Env() [][2]string {
	env := [][2]string{
		{"IRONRACK_LAB", s.Name},
		{"IRONRACK_CONSUL", s.Consul},
		{"IRONRACK_KEY_FILE", s.KeyFile},
		{"IRONRACK_LAB_DIR", s.Dir},
		{"IRONRACK_LAB_SHEET", s.Sheet},
		{"IRONRACK_LAB_DATA_DIR", s.DataDir},
		{"IRONRACK_LAB_BOOT_URL", s.Boot},
		{"IRONRACK_LAB_SERVER", s.Server},
		{"IRONRACK_LAB_HOST_IP", s.HostIP},
		{"IRONRACK_LAB_NETNS", s.NS},
		{"IRONRACK_LAB_SUBNET", s.Subnet},
	}
	if s.BMCCAFile != "" {
		env = append(env, [2]string{"IRONRACK_BMC_CA_FILE", s.BMCCAFile})
	}
	return env
}

// Query reads the lab name's status: its processes, each BMC's power over
// IPMI (in parallel, 3 s each), and each machine's state in the lab's
// inventory.
func Query(ctx context.Context, name string) (Status, error) {
	cfg, dir, err := Load(name)
	if err != nil {
		return Status{Name: name, Dir: dir}, err
	}
	s := Info(cfg, dir)
	s.Supervisor, s.Up = Supervising(dir)
	_, err = os.Stat(filepath.Join(dir, ReadyFile))
	s.Ready = err == nil
	if b, err := os.ReadFile(filepath.Join(dir, ErrorFile)); err == nil {
		s.Error = string(trimNL(b))
	}
	ps, err := Procs(dir)
	if err != nil {
		return s, err
	}
	last := latest(ps)
	seen := map[string]bool{}
	for _, p := range ps {
		if !seen[p.Role] {
			seen[p.Role] = true
			q := last[p.Role]
			s.Processes = append(s.Processes, ProcStatus{Proc: q, Alive: q.Alive()})
		}
	}

	var store *inventory.Store
	if client, err := api.NewClient(&api.Config{Address: s.Consul}); err == nil {
		store = inventory.New(client, inventory.Config{})
	}
	ctl := &ipmi.Controller{Timeout: 3 * time.Second}
	var roots *x509.CertPool
	if pemData, err := os.ReadFile(filepath.Join(dir, BMCCAFile)); err == nil {
		roots = x509.NewCertPool()
		roots.AppendCertsFromPEM(pemData)
	}
	l := cfg.Layout()
	s.Machines = make([]MachineStatus, len(l.Machines))
	var wg sync.WaitGroup
	for i, m := range l.Machines {
		ms := MachineStatus{Machine: m, Firmware: m.Firmware(), Power: "unknown"}
		if p, ok := last[fmt.Sprintf("bmc-%d", m.Index)]; ok {
			ms.BMCPID, ms.BMCAlive = p.PID, p.Alive()
		}
		if p, ok := last[fmt.Sprintf("qemu-%d", m.Index)]; ok && p.Alive() {
			ms.VMPID, ms.VMRunning = p.PID, true
		}
		s.Machines[i] = ms
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms := &s.Machines[i]
			if ms.BMCAlive {
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				st, err := ctl.PowerStatus(pctx, bmcCredentials(m, roots))
				cancel()
				if err != nil {
					ms.Power = "unknown: " + ipmi.Reason(err)
				} else {
					ms.Power = string(st)
				}
			} else {
				ms.Power = "unknown: BMC not running"
			}
			if store != nil && s.Up {
				fctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				if im, err := store.Find(fctx, m.Serial); err == nil {
					ms.State = string(im.State)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	return s, nil
}

// Labs lists the names of the labs with a state directory.
func Labs() ([]string, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && CheckName(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
