package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/ironrack/ironrack/inventory"
)

// TestShowFactsAndDrift: the facts discovery records and the drift a later
// report flags are in `inventory show` (table and JSON, against the
// schema) and `inventory list --where drift`.
func TestShowFactsAndDrift(t *testing.T) {
	c := newCLI(t)
	schema := loadSchema(t)
	ctx := context.Background()
	c.ok("inventory", "import", example("rack-sheet.csv"))
	client, err := api.NewClient(&api.Config{Address: c.addr})
	if err != nil {
		t.Fatal(err)
	}
	st := inventory.New(client, inventory.Config{})
	id := inventory.MachineID("SN1001X")
	facts := inventory.Facts{Serial: "SN1001X", UUID: "4c4c4544-0047-3510-8051-b4c04f4e3332", Firmware: "uefi",
		CPUModel: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", CPUCores: 64, MemGB: 256,
		Disks: []inventory.Disk{{Name: "sda", SizeBytes: 480e9, Model: "SAMSUNG MZ7LH480", Serial: "S-A"},
			{Name: "sdb", SizeBytes: 8e12, Model: "ST8000NM0055", Serial: "S-B", Rotational: true}},
		NICs: []inventory.NIC{{MAC: "52:54:00:01:01:01", SpeedMbps: 25000, Driver: "ixgbe"}, {MAC: "52:54:00:01:01:02", Driver: "ixgbe"}}}
	if _, err := st.Commission(ctx, id, facts, inventory.Change{}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []inventory.State{inventory.StateAllocated, inventory.StateDeploying, inventory.StateDeployed} {
		if _, err := st.SetState(ctx, id, to, inventory.System, inventory.Change{}); err != nil {
			t.Fatal(err)
		}
	}
	changed := facts
	changed.MemGB = 192
	changed.Disks = facts.Disks[:1]
	if _, err := st.RecordDrift(ctx, id, changed, inventory.Change{Who: "boot-server"}); err != nil {
		t.Fatal(err)
	}

	out := c.ok("-o", "json", "inventory", "show", "SN1001X")
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(v); err != nil {
		t.Fatalf("show violates the schema: %#v\n%s", err, out)
	}
	for k, want := range map[string]any{"state": "deployed", "serial": "SN1001X", "cpu_cores": 64.0, "mem_gb": 256.0,
		"uuid": facts.UUID, "firmware": "uefi", "cpu_model": facts.CPUModel} {
		if v[k] != want {
			t.Errorf("show %s = %v, want %v", k, v[k], want)
		}
	}
	disk := v["disks"].([]any)[1].(map[string]any)
	if disk["name"] != "sdb" || disk["size_bytes"] != 8e12 || disk["model"] != "ST8000NM0055" || disk["serial"] != "S-B" || disk["rotational"] != true {
		t.Errorf("show disks[1] = %v", disk)
	}
	nic := v["nics"].([]any)[0].(map[string]any)
	if nic["mac"] != "52:54:00:01:01:01" || nic["speed_mbps"] != 25000.0 || nic["driver"] != "ixgbe" || nic["primary"] != true {
		t.Errorf("show nics[0] = %v", nic)
	}
	drift := v["drift"].([]any)
	if len(drift) != 2 || drift[0].(map[string]any)["field"] != "mem_gb" || drift[1].(map[string]any)["field"] != "disks/sdb" {
		t.Errorf("show drift = %v", drift)
	}

	table := c.ok("inventory", "show", "SN1001X")
	for _, want := range []string{"uuid:", facts.UUID, "firmware:", "cpu_model:", "Gold 6338", "25000 Mb/s ixgbe",
		"sdb 8000000000000 bytes rotational ST8000NM0055 S-B", "DRIFT:", "mem_gb: recorded 256, reported 192",
		"disks/sdb: recorded sdb 8000000000000 bytes ST8000NM0055 serial S-B, reported none"} {
		if !strings.Contains(table, want) {
			t.Errorf("show table lacks %q:\n%s", want, table)
		}
	}

	list := c.ok("-o", "csv", "inventory", "list", "--where", "drift")
	if lines := strings.Split(strings.TrimSpace(list), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "SN1001X") || !strings.HasSuffix(lines[1], ",2") {
		t.Errorf("list --where drift:\n%s", list)
	}
	for expr, n := range map[string]int{`cpu_model matches "Xeon"`: 1, `firmware == "uefi" and any(disks, .rotational)`: 1, `not drift`: 39} {
		out := c.ok("-o", "json", "inventory", "list", "--where", expr)
		var ms []any
		json.Unmarshal([]byte(out), &ms)
		if len(ms) != n {
			t.Errorf("list --where %s: %d machines, want %d", expr, len(ms), n)
		}
	}
}
