package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const validFacts = `{"kind":"facts","facts":{"macs":["52:54:00:12:34:56"],"cpus":2,"memory_bytes":1073741824,"disks":[{"name":"vda","size_bytes":10737418240}],"serial":"SN-0001"}}`
const richFacts = `{"kind":"facts","facts":{"macs":["52:54:00:12:34:56","52:54:00:12:34:57"],"cpus":8,"memory_bytes":34359738368,` +
	`"disks":[{"name":"sda","size_bytes":480103981056,"serial":"S4X1","model":"SAMSUNG MZ7LH480","rotational":false},{"name":"sdb","size_bytes":8001563222016,"model":"ST8000NM0055-1RM112","rotational":true}],` +
	`"serial":"SN-0001","vendor":"Dell Inc.","product":"PowerEdge R740xd","cpu_model":"Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",` +
	`"uuid":"4c4c4544-0047-3510-8051-b4c04f4e3332","firmware":"uefi",` +
	`"nics":[{"mac":"52:54:00:12:34:56","name":"eth0","speed_mbps":25000,"driver":"mlx5_core"},{"mac":"52:54:00:12:34:57","name":"eth1","driver":"mlx5_core"}]}}`
const validEvent = `{"kind":"event","event":{"phase":"deploy","status":"progress","percent":40,"message":"writing image"}}`

func TestParseReport(t *testing.T) {
	tests := map[string]struct {
		body    string
		wantErr string
	}{
		"facts":            {body: validFacts},
		"event":            {body: validEvent},
		"rich facts":       {body: richFacts},
		"bad firmware":     {body: strings.Replace(richFacts, `"uefi"`, `"coreboot"`, 1), wantErr: `firmware "coreboot": want bios or uefi`},
		"bad uuid":         {body: strings.Replace(richFacts, `4c4c4544-0047`, `4c4c4544-zz47`, 1), wantErr: `uuid "4c4c4544-zz47`},
		"nic not in macs":  {body: strings.Replace(richFacts, `{"mac":"52:54:00:12:34:57"`, `{"mac":"52:54:00:12:34:58"`, 1), wantErr: `nic 1 mac "52:54:00:12:34:58" is not in macs`},
		"nic twice":        {body: strings.Replace(richFacts, `{"mac":"52:54:00:12:34:57"`, `{"mac":"52:54:00:12:34:56"`, 1), wantErr: `listed twice`},
		"nic speed":        {body: strings.Replace(richFacts, `"speed_mbps":25000`, `"speed_mbps":-1`, 1), wantErr: `speed_mbps -1`},
		"driver control":   {body: strings.Replace(richFacts, `"driver":"mlx5_core"`, `"driver":"mlx5\u0007"`, 1), wantErr: `nic 52:54:00:12:34:56 driver contains control characters`},
		"disk model long":  {body: strings.Replace(richFacts, `SAMSUNG MZ7LH480`, strings.Repeat("S", 257), 1), wantErr: `disk sda model is 257 bytes`},
		"disk serial ctl":  {body: strings.Replace(richFacts, `"S4X1"`, `"S4\u001bX1"`, 1), wantErr: `disk sda serial contains control characters`},
		"disk twice":       {body: strings.Replace(richFacts, `"name":"sdb"`, `"name":"sda"`, 1), wantErr: `disk sda listed twice`},
		"disk name long":   {body: strings.Replace(richFacts, `"name":"sdb"`, `"name":"`+strings.Repeat("s", 257)+`"`, 1), wantErr: `disk 1 name is 257 bytes`},
		"cpu_model long":   {body: strings.Replace(richFacts, `Intel(R)`, strings.Repeat("I", 300), 1), wantErr: `cpu_model is `},
		"unknown field":    {body: `{"kind":"event","event":{"phase":"x","status":"done","extra":1}}`, wantErr: `unknown field "extra"`},
		"unknown top":      {body: `{"kind":"event","evil":true}`, wantErr: `unknown field "evil"`},
		"trailing data":    {body: validEvent + `{}`, wantErr: "trailing data"},
		"no kind":          {body: `{}`, wantErr: "no kind"},
		"bad kind":         {body: `{"kind":"shell"}`, wantErr: `kind "shell"`},
		"facts no macs":    {body: `{"kind":"facts","facts":{"cpus":1,"memory_bytes":1}}`, wantErr: "0 macs"},
		"bad mac":          {body: `{"kind":"facts","facts":{"macs":["zz"],"cpus":1,"memory_bytes":1}}`, wantErr: `mac "zz"`},
		"zero cpus":        {body: `{"kind":"facts","facts":{"macs":["52:54:00:12:34:56"],"cpus":0,"memory_bytes":1}}`, wantErr: "cpus 0"},
		"negative percent": {body: `{"kind":"event","event":{"phase":"x","status":"progress","percent":-1}}`, wantErr: "percent -1"},
		"bad status":       {body: `{"kind":"event","event":{"phase":"x","status":"maybe"}}`, wantErr: `status "maybe"`},
		"control chars":    {body: `{"kind":"event","event":{"phase":"x\u001b[2J","status":"done"}}`, wantErr: "control characters"},
		"both":             {body: `{"kind":"event","event":{"phase":"x","status":"done"},"facts":{}}`, wantErr: "no facts"},
		"not json":         {body: `kind=facts`, wantErr: "decode report"},
		"wrong type":       {body: `{"kind":"facts","facts":{"cpus":"two"}}`, wantErr: "decode report"},
		"huge string":      {body: `{"kind":"event","event":{"phase":"` + strings.Repeat("a", 300) + `","status":"done"}}`, wantErr: "phase is 300 bytes"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseReport(strings.NewReader(tc.body))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzParseReport: never panics; whatever it accepts validates and survives
// a round trip through its canonical encoding unchanged.
func FuzzParseReport(f *testing.F) {
	for _, s := range []string{validFacts, richFacts, validEvent, `{}`, `{"kind":"facts","facts":null}`, `[1,2]`, `{"kind":"event","event":{"phase":"\ud800","status":"done"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := ParseReport(bytes.NewReader(data))
		if err != nil {
			return
		}
		if err := rep.Validate(); err != nil {
			t.Fatalf("accepted a report that does not validate: %v", err)
		}
		again, err := ParseReport(bytes.NewReader(marshal(rep)))
		if err != nil {
			t.Fatalf("canonical encoding of an accepted report is refused: %v\n%s", err, marshal(rep))
		}
		if diff := cmp.Diff(rep, again); diff != "" {
			t.Fatalf("round trip changed the report (-first +second):\n%s", diff)
		}
	})
}

// marshal is the canonical encoding the fuzz target round-trips through.
func marshal(r Report) []byte {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(r)
	return b.Bytes()
}

// TestEventReportParses: commissioning events parse with the boot server's
// strict parser, even with a message that would not.
func TestEventReportParses(t *testing.T) {
	for _, msg := range []string{"3 checks passed", "disk vda readable: read at 0: \x00\x1b[31m bad \xff", strings.Repeat("é", 3000)} {
		b, err := json.Marshal(EventReport("commission", "failed", msg))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := ParseReport(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%q: %v", msg, err)
		}
		if rep.Event == nil || rep.Event.Phase != "commission" || rep.Event.Status != "failed" {
			t.Errorf("parsed %+v", rep.Event)
		}
	}
}
