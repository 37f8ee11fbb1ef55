package inventory

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestChooseRootDisks: the hint is the where-language over one disk's
// fields (three-valued: a disk without a serial is not selected by a serial
// comparison); several matches take the smallest, then the first by name;
// a mirror takes two; no match names the hint and every disk.
func TestChooseRootDisks(t *testing.T) {
	disks := []Disk{
		{Name: "sda", SizeBytes: 8e12, Model: "ST8000NM", Serial: "ZA1", Rotational: true, WWN: "naa.5000c500aaaa"},
		{Name: "sdb", SizeBytes: 480e9, Model: "SAMSUNG MZ7", Serial: "S3Z9NB0K123"},
		{Name: "sdc", SizeBytes: 480e9, Model: "SAMSUNG MZ7", Serial: "S3Z9NB0K124"},
		{Name: "nvme0n1", SizeBytes: 1.92e12, Model: "PM983"},
	}
	for name, tc := range map[string]struct {
		hint, layout string
		want         []string
		err          string
	}{
		"not rotational, smallest then name": {hint: "not rotational", want: []string{"sdb"}},
		"size and rotation":                  {hint: "not rotational and size_bytes > 1e12", want: []string{"nvme0n1"}},
		"serial":                             {hint: `serial == "S3Z9NB0K124"`, want: []string{"sdc"}},
		"wwn":                                {hint: `wwn startsWith "naa.5000c500"`, want: []string{"sda"}},
		"missing serial is unknown":          {hint: `serial != "ZA1" and size_bytes > 1e12`, err: "matches 0"},
		"name":                               {hint: `name matches "^nvme"`, want: []string{"nvme0n1"}},
		"model":                              {hint: `model contains "SAMSUNG"`, layout: LayoutFlat, want: []string{"sdb"}},
		"mirror":                             {hint: `model contains "SAMSUNG"`, layout: LayoutMirror, want: []string{"sdb", "sdc"}},
		"mirror of the two smallest":         {hint: `not rotational`, layout: LayoutMirror, want: []string{"sdb", "sdc"}},
		"mirror needs two":                   {hint: `rotational`, layout: LayoutMirror, err: `root disk hint "rotational" matches 1 of the machine's disks, mirror needs 2`},
		"no match":                           {hint: `size_bytes > 1e13`, err: `root disk hint "size_bytes > 1e13" matches 0 of the machine's disks, flat needs 1 (disks: sda (8000000000000 bytes, rotational, model ST8000NM, serial ZA1, wwn naa.5000c500aaaa), sdb (480000000000 bytes, not rotational`},
		"machine field":                      {hint: `mem_gb > 1`, err: `unknown field "mem_gb" (fields: name, size_bytes, model, serial, rotational, wwn)`},
		"syntax":                             {hint: `size_bytes >`, err: "root disk hint: where-expression"},
		"empty":                              {hint: " ", err: "root disk hint is empty"},
		"mirror without hint":                {hint: "", layout: LayoutMirror, err: "root layout mirror needs a root disk hint"},
		"bad layout":                         {hint: "rotational", layout: "raid5", err: `root layout "raid5": want flat or mirror`},
		"type mismatch":                      {hint: `serial > 5`, err: "root disk hint on disk sda"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ChooseRootDisks(tc.hint, tc.layout, disks)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, d := range got {
				names = append(names, d.Name)
			}
			if d := cmp.Diff(tc.want, names); d != "" {
				t.Errorf("chosen (-want +got):\n%s", d)
			}
		})
	}
	if _, err := ChooseRootDisks("rotational", "", nil); err == nil || !strings.Contains(err.Error(), "no disks in the machine's facts") {
		t.Errorf("no disks: %v", err)
	}
}

// TestDeploySpecRootDisk: Validate compiles the hint and checks the layout.
func TestDeploySpecRootDisk(t *testing.T) {
	base := DeploySpec{Image: "debian", ImageVersion: "1", Hostname: "h"}
	for hint, layout := range map[string]string{"": "", "not rotational": "flat", "rotational": "mirror"} {
		s := base
		s.RootDisk, s.RootLayout = hint, layout
		if err := s.Validate(); err != nil {
			t.Errorf("%q %q: %v", hint, layout, err)
		}
	}
	for _, tc := range []struct{ hint, layout, err string }{
		{"cpu_cores > 1", "", `deploy spec: root disk hint: where-expression "cpu_cores > 1": unknown field "cpu_cores"`},
		{"", "mirror", "deploy spec: root layout mirror needs a root disk hint"},
		{"rotational", "stripe", `deploy spec: root layout "stripe"`},
	} {
		s := base
		s.RootDisk, s.RootLayout = tc.hint, tc.layout
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q %q: %v, want %q", tc.hint, tc.layout, err, tc.err)
		}
	}
}
