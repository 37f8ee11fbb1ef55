package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
)

func TestParseSheetErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		csv  string
		want []string
	}{
		"missing columns": {"rack,slot,serial\n", []string{
			"t.csv:1: bmc_address: required column missing",
			"t.csv:1: bmc_username: required column missing",
			"t.csv:1: bmc_password: need a bmc_password or a bmc_credential_ref column"}},
		"unknown and twice": {"rack,slot,serial,bmc_address,bmc_username,bmc_password,colour,rack\n", []string{
			"t.csv:1: colour: unknown column", "t.csv:1: rack: column appears twice"}},
		"empty file": {"", []string{"t.csv:1: empty file"}},
		"row problems": {`rack,slot,serial,bmc_address,bmc_username,bmc_password,bmc_port,bmc_protocol,macs,tags
r1,1,,10.0.0.1,admin,pw,,,,
r1,2,S2,10.0.0.300,admin,pw,70000,ipmi,zz:zz,role
r1,3,S3,10.0.0.3,,pw,623,snmp,52:54:00:00:00:03,a=1;a=2
r1,4,S4,10.0.0.4,admin,,623,ipmi,,
`, []string{
			"t.csv:2: serial: is empty",
			"t.csv:3: bmc_address: \"10.0.0.300\" is not an IP address or host name",
			"t.csv:3: bmc_port: \"70000\" is not a port number",
			"t.csv:3: macs: malformed MAC \"zz:zz\"",
			"t.csv:3: tags: \"role\" is not key=value",
			"t.csv:4: bmc_username: is empty",
			"t.csv:4: tags: tag a given twice",
			"t.csv:4: bmc_protocol: unknown protocol \"snmp\"",
			"t.csv:5: bmc_password: is empty (and so is bmc_credential_ref)",
		}},
		"duplicates in sheet": {`rack,slot,serial,bmc_address,bmc_username,bmc_password,macs
r1,1,S1,10.0.0.1,admin,pw,52:54:00:00:00:01
r1,1,S2,10.0.0.1,admin,pw,52:54:00:00:00:01
r1,3,S1,10.0.0.3,admin,pw,
`, []string{
			"t.csv:3: macs: MAC 52:54:00:00:00:01 also on line 2",
			"t.csv:3: bmc_address: BMC address 10.0.0.1:623 also on line 2",
			"t.csv:3: slot: rack/slot r1/1 also on line 2",
			"t.csv:4: serial: serial S1 also on line 2",
		}},
		"bmc_tls": {"rack,slot,serial,bmc_address,bmc_username,bmc_password,bmc_protocol,bmc_tls\nr1,1,S1,10.0.0.1,admin,pw,redfish,sha256:abcd\nr1,2,S2,10.0.0.2,admin,pw,redfish,trust-me\n", []string{
			"t.csv:2: bmc_tls: \"sha256:abcd\" is not a certificate pin", "t.csv:3: bmc_tls: \"trust-me\" is not a certificate pin"}},
		"field count": {"rack,slot,serial,bmc_address,bmc_username,bmc_password\nr1,1,S1\n", []string{
			"t.csv:2: has 3 fields, the header has 6"}},
		"bad quote": {"rack,slot,serial,bmc_address,bmc_username,bmc_password\nr1,1,\"S1,x\n", []string{
			"t.csv:2: malformed CSV"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSheet("t.csv", strings.NewReader(tc.csv))
			var se SheetErrors
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want SheetErrors", err)
			}
			got := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
			if len(se) != len(tc.want) {
				t.Errorf("got %d problems, want %d:\n%s", len(se), len(tc.want), got)
			}
		})
	}
}

// TestParseSheetTLS: bmc_tls takes a pin as people copy it (openssl's
// colon form, either case) and stores one form; "pin" is left for the
// importer to resolve; a pin or insecure on an IPMI BMC is refused.
func TestParseSheetTLS(t *testing.T) {
	const hexPin = "5663de810551f269ea5c9a17b800d776710415b3e04b3fe20d8dde393ce50b01"
	colons := ""
	for i := 0; i < len(hexPin); i += 2 {
		if i > 0 {
			colons += ":"
		}
		colons += strings.ToUpper(hexPin[i : i+2])
	}
	sheet := "rack,slot,serial,bmc_address,bmc_username,bmc_password,bmc_protocol,bmc_tls\n" +
		"r1,1,S1,10.0.0.1,admin,pw,redfish,\n" +
		"r1,2,S2,10.0.0.2,admin,pw,redfish,INSECURE\n" +
		"r1,3,S3,10.0.0.3,admin,pw,redfish,SHA256:" + colons + "\n" +
		"r1,4,S4,10.0.0.4,admin,pw,redfish,pin\n"
	rows, err := ParseSheet("t.csv", strings.NewReader(sheet))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.BMCTLS)
	}
	if diff := cmp.Diff([]string{"", "insecure", "sha256:" + hexPin, "pin"}, got); diff != "" {
		t.Errorf("bmc_tls (-want +got):\n%s", diff)
	}
	for name, tc := range map[string]struct {
		b    BMC
		want string
	}{
		"pin on ipmi":      {BMC{Address: "10.0.0.1", Protocol: ProtocolIPMI, Username: "a", TLS: "sha256:" + hexPin}, "applies to redfish BMCs only"},
		"unresolved pin":   {BMC{Address: "10.0.0.1", Protocol: ProtocolRedfish, Username: "a", TLS: "pin"}, "fetches the certificate and asks"},
		"not stored form":  {BMC{Address: "10.0.0.1", Protocol: ProtocolRedfish, Username: "a", TLS: "SHA256:" + hexPin}, "not in its stored form"},
		"insecure redfish": {BMC{Address: "10.0.0.1", Protocol: ProtocolRedfish, Username: "a", TLS: "insecure"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			var msgs []string
			for _, fe := range validateBMC(&tc.b) {
				msgs = append(msgs, fe.Error())
			}
			all := strings.Join(msgs, "; ")
			if tc.want == "" && all != "" || !strings.Contains(all, tc.want) {
				t.Errorf("problems %q, want one with %q", all, tc.want)
			}
		})
	}
}

func TestImportConflictsWithInventory(t *testing.T) {
	s, c := testStore(t)
	ctx := context.Background()
	mustImport(t, s, sheet3)
	before := kvSnapshot(t, c)
	bad := `rack,slot,serial,bmc_address,bmc_username,bmc_password,macs
r9,1,N1,10.9.0.1,admin,pw,52:54:00:00:00:01
r1,1,N2,10.9.0.2,admin,pw,
r9,3,N3,127.0.20.2,admin,pw,
r9,4,N4,10.9.0.4,admin,pw,
`
	rows, err := ParseSheet("bad.csv", strings.NewReader(bad))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Import(ctx, "bad.csv", rows, Change{})
	want := []string{
		"bad.csv:2: macs: MAC 52:54:00:00:00:01 is already held by machine " + MachineID("S1"),
		"bad.csv:3: slot: rack r1 slot 1 is already held by machine " + MachineID("S1"),
		"bad.csv:4: bmc_address: BMC address 127.0.20.2:623 is already held by machine " + MachineID("S2"),
	}
	if err == nil {
		t.Fatal("import with conflicts succeeded")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
	// All-or-nothing: N4 was fine, yet nothing at all was stored.
	if diff := cmp.Diff(before, kvSnapshot(t, c)); diff != "" {
		t.Errorf("a refused import changed the store:\n%s", diff)
	}
	// A credential reference that does not exist is refused too.
	rows, _ = ParseSheet("ref.csv", strings.NewReader("rack,slot,serial,bmc_address,bmc_username,bmc_credential_ref\nr5,1,R1,10.5.0.1,admin,shared/nope\n"))
	if _, err := s.Import(ctx, "ref.csv", rows, Change{}); err == nil || !strings.Contains(err.Error(), "ref.csv:2: bmc_credential_ref: no credential") {
		t.Errorf("missing ref: %v", err)
	}
	if err := s.SetCredential(ctx, "shared/rack5", "s3cret"); err != nil {
		t.Fatal(err)
	}
	rows, _ = ParseSheet("ref.csv", strings.NewReader("rack,slot,serial,bmc_address,bmc_username,bmc_credential_ref\nr5,1,R1,10.5.0.1,admin,shared/rack5\n"))
	if _, err := s.Import(ctx, "ref.csv", rows, Change{}); err != nil {
		t.Fatal(err)
	}
	m, _ := s.Find(ctx, "R1")
	if cred, err := s.Credential(ctx, m); err != nil || cred.Password != "s3cret" {
		t.Errorf("shared credential: %v %v", cred, err)
	}
}

func TestImportUpdateAndExportRoundTrip(t *testing.T) {
	s, c := testStore(t)
	ctx := context.Background()
	mustImport(t, s, sheet3)
	changed := strings.Replace(sheet3, "r1,2,S2,127.0.20.2,admin,pw2,52:54:00:00:00:02,,Dell,R650", "r1,5,S2,127.0.20.2,admin,pw2-new,52:54:00:00:00:02,owner=x,Dell,R650", 1)
	res := mustImport(t, s, changed)
	if diff := cmp.Diff([]string{MachineID("S2")}, res.Updated); diff != "" || len(res.Created) != 0 || res.Unchanged != 2 {
		t.Fatalf("update: %+v", res)
	}
	m, _ := s.Find(ctx, "S2")
	if m.Slot != "5" || m.Tags["owner"] != "x" {
		t.Errorf("updated machine = %+v", m)
	}
	if cred, _ := s.Credential(ctx, m); cred.Password != "pw2-new" {
		t.Errorf("password not updated")
	}
	// The old slot is free again.
	if _, err := s.Find(ctx, "S2"); err != nil {
		t.Fatal(err)
	}
	ms, _ := s.List(ctx, Query{})
	var b strings.Builder
	if _, err := WriteSheet(&b, ms); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "pw") {
		t.Fatalf("export contains a password:\n%s", b.String())
	}
	before := kvSnapshot(t, c)
	rows, err := ParseSheet("export.csv", strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("export does not parse: %v\n%s", err, b.String())
	}
	res, err = s.Import(ctx, "export.csv", rows, Change{})
	if err != nil || res.Unchanged != 3 {
		t.Fatalf("re-import of export: %+v %v", res, err)
	}
	if diff := cmp.Diff(before, kvSnapshot(t, c)); diff != "" {
		t.Errorf("re-importing the export changed the store:\n%s", diff)
	}
}

// bigSheet is a rack sheet of n machines over n/40 racks.
func bigSheet(n int) string { return bigSheetN(n, 1) }

// bigSheetN makes sheets whose machines do not clash for different k.
func bigSheetN(n, k int) string {
	var b strings.Builder
	b.WriteString("rack,slot,serial,bmc_address,bmc_username,bmc_password,macs,tags\n")
	for i := range n {
		fmt.Fprintf(&b, "k%dr%02d,%d,BIG%d-%05d,127.%d.%d.%d,admin,pw%d,52:54:%02x:%02x:%02x:01,class=c%d\n",
			k, i/40, i%40+1, k, i, k, i/250, i%250+1, i, k, i/256, i%256, i%3)
	}
	return b.String()
}

func TestImport2000(t *testing.T) {
	s, c := testStore(t)
	ctx := context.Background()
	start := time.Now()
	res := mustImport(t, s, bigSheet(2000))
	t.Logf("imported 2000 rows in %v", time.Since(start))
	if len(res.Created) != 2000 {
		t.Fatalf("created %d", len(res.Created))
	}
	ms, err := s.List(ctx, Query{})
	if err != nil || len(ms) != 2000 {
		t.Fatalf("list = %d, %v", len(ms), err)
	}
	nodes, _, _ := c.Catalog().Nodes(&api.QueryOptions{NodeMeta: map[string]string{"ironrack": "machine"}})
	if len(nodes) != 2000 {
		t.Fatalf("catalog nodes = %d", len(nodes))
	}
	if j := journalKeys(t, s, c); len(j) != 0 {
		t.Fatalf("journal left behind: %v", j)
	}
	res = mustImport(t, s, bigSheet(2000))
	if res.Unchanged != 2000 {
		t.Fatalf("re-import: %+v", res)
	}
	// One bad row among 2001 stores nothing.
	bad := bigSheetN(2000, 2) + "r99,1,NEW1,127.1.0.1,admin,pw,,\n"
	before := len(kvSnapshot(t, c))
	rows, err := ParseSheet("big.csv", strings.NewReader(bad))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "big.csv", rows, Change{}); err == nil || !strings.Contains(err.Error(), "big.csv:2002: bmc_address: BMC address 127.1.0.1:623 is already held by machine "+MachineID("BIG1-00000")) {
		t.Fatalf("bad 2001st row: %v", err)
	}
	if after := len(kvSnapshot(t, c)); after != before {
		t.Fatalf("keys %d → %d after a refused import", before, after)
	}
}

// TestImportKilledMidway runs a 2000-row import in a child process, kills it
// with SIGKILL after some chunks have landed, and checks that the next
// command rolls the partial batch back and then imports everything.
func TestImportKilledMidway(t *testing.T) {
	if os.Getenv("IRONRACK_IMPORT_CHILD") != "" {
		return // the child runs in TestImportChild
	}
	s, c, addr := testStoreAddr(t)
	ctx := context.Background()
	cmd := exec.Command(os.Args[0], "-test.run=^TestImportChild$", "-test.v")
	cmd.Env = append(os.Environ(), "IRONRACK_IMPORT_CHILD="+addr)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := len(journalKeys(t, s, c))
		if n > 200 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child never got midway:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	partial, _ := s.List(ctx, Query{})
	if len(partial) == 0 || len(partial) >= 2000 {
		t.Fatalf("after the kill %d machines exist; want a partial batch", len(partial))
	}
	t.Logf("killed with %d of 2000 machines written", len(partial))
	// Even the reads see a consistent per-machine state; the next writing
	// command rolls the batch back.
	done, err := s.Recover(ctx)
	if err != nil || len(done) != 1 {
		t.Fatalf("recover = %v, %v", done, err)
	}
	if ms, _ := s.List(ctx, Query{}); len(ms) != 0 {
		t.Fatalf("after recovery %d machines remain", len(ms))
	}
	if n := len(kvSnapshot(t, c)); n != 0 {
		t.Fatalf("after recovery %d keys remain: %v", n, kvSnapshot(t, c))
	}
	nodes, _, _ := c.Catalog().Nodes(&api.QueryOptions{NodeMeta: map[string]string{"ironrack": "machine"}})
	if len(nodes) != 0 {
		t.Fatalf("after recovery %d catalog nodes remain", len(nodes))
	}
	res := mustImport(t, s, bigSheet(2000))
	if len(res.Created) != 2000 {
		t.Fatalf("import after recovery: %+v", res)
	}
}

// TestImportChild is the child process of TestImportKilledMidway: a slow
// import that the parent kills.
func TestImportChild(t *testing.T) {
	addr := os.Getenv("IRONRACK_IMPORT_CHILD")
	if addr == "" {
		t.Skip("child of TestImportKilledMidway only")
	}
	c, _ := api.NewClient(&api.Config{Address: addr})
	var key [32]byte
	s := New(c, Config{Sealer: NewSealer(key)})
	s.afterChunk = func() { time.Sleep(30 * time.Millisecond) }
	rows, err := ParseSheet("big.csv", strings.NewReader(bigSheet(2000)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Import(context.Background(), "big.csv", rows, Change{})
	t.Fatalf("child import finished before the kill: %v", err)
}

// kvSnapshot is every key and value under the test store's prefix.
func kvSnapshot(t testing.TB, c *api.Client) map[string]string {
	t.Helper()
	kvs, _, err := c.KV().List("ironrack/", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range kvs {
		out[kv.Key] = string(kv.Value)
	}
	return out
}

func journalKeys(t testing.TB, s *Store, c *api.Client) []string {
	t.Helper()
	keys, _, err := c.KV().Keys(s.key("journal")+"/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestRecoverCommittedJournal: a batch whose journal was marked committed but
// not removed (the removal of a 100,000-item journal can outlast its
// deadline) is complete: Recover removes the journal and undoes nothing.
func TestRecoverCommittedJournal(t *testing.T) {
	s, c := testStore(t)
	ctx := context.Background()
	mustImport(t, s, bigSheet(20))
	ms, err := s.List(ctx, Query{})
	if err != nil || len(ms) != 20 {
		t.Fatalf("list = %d, %v", len(ms), err)
	}
	// The journal such a batch leaves: an item per machine whose sum
	// matches what is stored (so a rollback would delete them), and the
	// committed mark.
	op := "20261207T000000-import-test"
	for _, m := range ms {
		cur, _, err := s.get(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(cur)
		sum := sha256.Sum256(b)
		iv, _ := json.Marshal(journalItem{NextSum: hex.EncodeToString(sum[:])})
		if _, err := c.KV().Put(&api.KVPair{Key: s.key("journal", op, "items", m.ID), Value: iv}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.KV().Put(&api.KVPair{Key: s.key("journal", op, "committed"), Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	done, err := s.Recover(ctx)
	if err != nil || len(done) != 1 {
		t.Fatalf("recover = %v, %v", done, err)
	}
	if after, _ := s.List(ctx, Query{}); len(after) != 20 {
		t.Fatalf("after recovering a committed batch %d of 20 machines remain", len(after))
	}
	if n := len(journalKeys(t, s, c)); n != 0 {
		t.Fatalf("%d journal keys remain", n)
	}
}
