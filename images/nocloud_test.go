package images

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

const key1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHtu6m3w5Ig3cNn3cWd2s0HT0IGx8e2ejmLY+ieG3RyD op@ironrack"

func seed() Seed {
	return Seed{InstanceID: "m-0007-3", Hostname: "web-7.rack2.example", MachineID: "m-0007", Role: "web",
		SSHAuthorizedKeys: []string{key1}, ConsulJoin: []string{"10.0.0.1", "10.0.0.2:8301"}, ConsulDatacenter: "lab",
		Services: []Service{
			{Name: "web", Port: 80, Tags: []string{"v2"}, Check: &Check{HTTP: "http://127.0.0.1:80/healthz", Interval: 5 * time.Second, Timeout: time.Second}},
			{Name: "ssh", Port: 22, Check: &Check{TCP: "127.0.0.1:22"}},
		}}
}

// golden compares got with testdata/name, rewriting it under UPDATE_GOLDEN=1.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if os.Getenv("UPDATE_GOLDEN") != "" {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func TestNoCloud(t *testing.T) {
	md, ud, err := NoCloud(seed())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "nocloud/meta-data", md)
	golden(t, "nocloud/user-data", ud)

	// What cloud-init reads: YAML after the #cloud-config line.
	if !bytes.HasPrefix(ud, []byte("#cloud-config\n")) {
		t.Fatalf("user-data does not start with #cloud-config")
	}
	var cc struct {
		Hostname   string   `yaml:"hostname"`
		FQDN       string   `yaml:"fqdn"`
		Locale     bool     `yaml:"locale"`
		Users      []any    `yaml:"users"`
		Keys       []string `yaml:"ssh_authorized_keys"`
		WriteFiles []struct {
			Path, Owner, Permissions, Content string
		} `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(ud, &cc); err != nil {
		t.Fatal(err)
	}
	if cc.Hostname != "web-7" || cc.FQDN != "web-7.rack2.example" {
		t.Errorf("cloud-config %+v", cc)
	}
	var raw map[string]any
	yaml.Unmarshal(ud, &raw)
	// ssh_pwauth must stay unset: cloud-init restarts sshd to apply it.
	if _, set := raw["ssh_pwauth"]; raw["disable_root"] != false || set || raw["manage_etc_hosts"] != true {
		t.Errorf("root login settings: disable_root %v ssh_pwauth %v manage_etc_hosts %v", raw["disable_root"], raw["ssh_pwauth"], raw["manage_etc_hosts"])
	}
	if !cmp.Equal(cc.Keys, []string{key1}) {
		t.Errorf("keys %q", cc.Keys)
	}
	if len(cc.WriteFiles) != 2 || cc.WriteFiles[0].Path != ConsulConfigFile || cc.WriteFiles[1].Path != ConsulServicesFile {
		t.Fatalf("write_files %+v", cc.WriteFiles)
	}
	for _, f := range cc.WriteFiles {
		// They may hold the gossip key and the ACL token: the agent's
		// group reads them, nobody else.
		if f.Owner != "root:consul" || f.Permissions != "0640" {
			t.Errorf("%s: owner %q permissions %q, want root:consul 0640", f.Path, f.Owner, f.Permissions)
		}
	}
	var agent map[string]any
	if err := json.Unmarshal([]byte(cc.WriteFiles[0].Content), &agent); err != nil {
		t.Fatalf("consul config is not JSON: %v\n%s", err, cc.WriteFiles[0].Content)
	}
	want := map[string]any{
		"datacenter": "lab", "node_name": "web-7", "node_meta": map[string]any{MetaMachine: "m-0007", MetaRole: "web"},
		"data_dir": "/var/lib/consul", "server": false, "bind_addr": DefaultConsulBind, "client_addr": "127.0.0.1 " + DefaultConsulBind,
		"retry_join": []any{"10.0.0.1", "10.0.0.2:8301"}, "leave_on_terminate": true, "disable_update_check": true,
	}
	if diff := cmp.Diff(want, agent); diff != "" {
		t.Errorf("consul config (-want +got):\n%s", diff)
	}
	var svcs map[string]any
	if err := json.Unmarshal([]byte(cc.WriteFiles[1].Content), &svcs); err != nil {
		t.Fatalf("services are not JSON: %v", err)
	}
	wantSvcs := map[string]any{"services": []any{
		map[string]any{"name": "web", "port": 80.0, "tags": []any{"v2"}, "checks": []any{map[string]any{"http": "http://127.0.0.1:80/healthz", "interval": "5s", "timeout": "1s"}}},
		map[string]any{"name": "ssh", "port": 22.0, "checks": []any{map[string]any{"tcp": "127.0.0.1:22", "interval": "10s"}}},
	}}
	if diff := cmp.Diff(wantSvcs, svcs); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}

	// No Consul servers: no agent config, no services.
	s := seed()
	s.ConsulJoin, s.Services = nil, nil
	_, ud, err = NoCloud(s)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ud, []byte("write_files")) {
		t.Errorf("user-data without Consul writes files:\n%s", ud)
	}
}

// TestConsulFilesSecrets: with a gossip key, an ACL token and a CA, the
// agent encrypts its gossip, enforces ACLs (default deny) with the token as
// its agent token, every service carries the token, and it verifies the
// servers' TLS; there is no default token, which would lend the token to
// anyone reaching the agent's API.
func TestConsulFilesSecrets(t *testing.T) {
	const key, token = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=", "2f1c3e8a-6a7b-4c1d-9e2f-0a1b2c3d4e5f"
	const ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
	s := seed()
	s.ConsulGossipKey, s.ConsulToken, s.ConsulCACert = key, token, ca
	files, err := s.ConsulFiles()
	if err != nil {
		t.Fatal(err)
	}
	var agent map[string]any
	if err := json.Unmarshal(files[ConsulConfigFile], &agent); err != nil {
		t.Fatal(err)
	}
	// TLS: the agent verifies the servers against the CA and gets its own
	// certificate from them.
	if got := string(files[ConsulCAFile]); got != ca+"\n" {
		t.Errorf("%s = %q, want the CA", ConsulCAFile, got)
	}
	wantTLS := map[string]any{"defaults": map[string]any{"ca_file": ConsulCAFile, "verify_outgoing": true},
		"internal_rpc": map[string]any{"verify_server_hostname": true}}
	if diff := cmp.Diff(wantTLS, agent["tls"]); diff != "" {
		t.Errorf("tls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"tls": true}, agent["auto_encrypt"]); diff != "" {
		t.Errorf("auto_encrypt (-want +got):\n%s", diff)
	}
	_, ud, err := NoCloud(s)
	if err != nil {
		t.Fatal(err)
	}
	var cc struct {
		WriteFiles []struct{ Path, Owner, Permissions string } `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(ud, &cc); err != nil {
		t.Fatal(err)
	}
	if len(cc.WriteFiles) != 3 || cc.WriteFiles[2].Path != ConsulCAFile || cc.WriteFiles[2].Owner != "root:consul" || cc.WriteFiles[2].Permissions != "0640" {
		t.Errorf("write_files %+v, want the CA third, root:consul 0640", cc.WriteFiles)
	}
	if agent["encrypt"] != key {
		t.Errorf("encrypt = %v, want the gossip key", agent["encrypt"])
	}
	wantACL := map[string]any{"enabled": true, "default_policy": "deny", "tokens": map[string]any{"agent": token}}
	if diff := cmp.Diff(wantACL, agent["acl"]); diff != "" {
		t.Errorf("acl (-want +got):\n%s", diff)
	}
	var svcs struct{ Services []map[string]any }
	if err := json.Unmarshal(files[ConsulServicesFile], &svcs); err != nil {
		t.Fatal(err)
	}
	for _, svc := range svcs.Services {
		if svc["token"] != token {
			t.Errorf("service %v: token %v, want the agent's", svc["name"], svc["token"])
		}
	}

	// Only the gossip key: encryption without ACLs or TLS, and no token anywhere.
	s.ConsulToken, s.ConsulCACert = "", ""
	files, err = s.ConsulFiles()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files[ConsulCAFile]; ok {
		t.Errorf("a CA file without a CA")
	}
	for path, b := range files {
		if bytes.Contains(b, []byte(`"acl"`)) || bytes.Contains(b, []byte(`"token"`)) || bytes.Contains(b, []byte(`"tls"`)) {
			t.Errorf("%s without a token mentions ACLs:\n%s", path, b)
		}
	}
	if !bytes.Contains(files[ConsulConfigFile], []byte(key)) {
		t.Errorf("config without a token lost the gossip key:\n%s", files[ConsulConfigFile])
	}
}

func TestNoCloudMultipart(t *testing.T) {
	for name, extra := range map[string]struct {
		body, typ string
	}{
		"cloud-config": {"#cloud-config\nruncmd:\n  - [touch, /tmp/op]\npackages: [nginx]\n", "text/cloud-config"},
		"script":       {"#!/bin/sh\necho hi > /tmp/op\n", "text/x-shellscript"},
	} {
		t.Run(name, func(t *testing.T) {
			s := seed()
			s.ExtraUserData = []byte(extra.body)
			_, ud, err := NoCloud(s)
			if err != nil {
				t.Fatal(err)
			}
			if _, again, _ := NoCloud(s); !bytes.Equal(ud, again) {
				t.Error("two renders differ")
			}
			msg, err := mail.ReadMessage(bytes.NewReader(ud))
			if err != nil {
				t.Fatalf("not a MIME message: %v\n%s", err, ud)
			}
			mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
			if err != nil || mt != "multipart/mixed" {
				t.Fatalf("content type %q: %v", mt, err)
			}
			r := multipart.NewReader(msg.Body, params["boundary"])
			var parts []*multipart.Part
			var bodies []string
			for {
				p, err := r.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(p)
				b, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw), "\r\n", ""))
				if err != nil {
					t.Fatalf("part %d: %v", len(parts), err)
				}
				parts = append(parts, p)
				bodies = append(bodies, string(b))
			}
			if len(parts) != 2 {
				t.Fatalf("%d parts, want 2", len(parts))
			}
			first, _, _ := mime.ParseMediaType(parts[0].Header.Get("Content-Type"))
			second, _, _ := mime.ParseMediaType(parts[1].Header.Get("Content-Type"))
			if first != "text/cloud-config" || second != extra.typ {
				t.Errorf("part types %s, %s; want text/cloud-config, %s", first, second, extra.typ)
			}
			_, plain, _ := NoCloud(seed())
			if bodies[0] != string(plain) {
				t.Errorf("first part is not ironrack's cloud-config:\n%s", bodies[0])
			}
			if bodies[1] != extra.body {
				t.Errorf("second part %q, want the operator's %q", bodies[1], extra.body)
			}
			merge := parts[1].Header.Get("Merge-Type")
			if extra.typ == "text/cloud-config" && merge != "list(append)+dict(no_replace,recurse_list)+str()" {
				t.Errorf("operator part Merge-Type %q", merge)
			}
		})
	}
}

func TestSeedValidate(t *testing.T) {
	big := "#cloud-config\n# " + strings.Repeat("x", MaxUserData) + "\n"
	for name, tc := range map[string]struct {
		edit func(*Seed)
		want string
	}{
		"no instance id":    {func(s *Seed) { s.InstanceID = "" }, "instance id"},
		"bad hostname":      {func(s *Seed) { s.Hostname = "web_7" }, `hostname "web_7"`},
		"long label":        {func(s *Seed) { s.Hostname = strings.Repeat("a", 64) }, "is not a DNS label"},
		"no keys":           {func(s *Seed) { s.SSHAuthorizedKeys = nil }, "no SSH authorized keys"},
		"bad key":           {func(s *Seed) { s.SSHAuthorizedKeys = []string{key1, "ssh-rsa notakey"} }, "SSH key 2"},
		"key with newline":  {func(s *Seed) { s.SSHAuthorizedKeys = []string{key1 + "\n" + key1} }, "line break"},
		"bad machine id":    {func(s *Seed) { s.MachineID = "m 1" }, "machine id"},
		"bad role":          {func(s *Seed) { s.Role = "web\nrm" }, "role"},
		"bad join":          {func(s *Seed) { s.ConsulJoin = []string{"10.0.0.1:99999"} }, `consul join address "10.0.0.1:99999"`},
		"join not a host":   {func(s *Seed) { s.ConsulJoin = []string{"provider=aws tag_key=x"} }, "consul join address"},
		"bad datacenter":    {func(s *Seed) { s.ConsulDatacenter = "dc 1" }, "datacenter"},
		"services no join":  {func(s *Seed) { s.ConsulJoin = nil }, "services need a Consul agent"},
		"bad service name":  {func(s *Seed) { s.Services[0].Name = "web/1" }, `service name "web/1"`},
		"duplicate service": {func(s *Seed) { s.Services[1].Name = "web" }, `service "web" is given twice`},
		"bad port":          {func(s *Seed) { s.Services[0].Port = 70000 }, "port 70000"},
		"two checks":        {func(s *Seed) { s.Services[0].Check.TCP = "127.0.0.1:80" }, "exactly one of TCP and HTTP"},
		"no check kind":     {func(s *Seed) { s.Services[0].Check = &Check{} }, "exactly one of TCP and HTTP"},
		"bad tcp check":     {func(s *Seed) { s.Services[1].Check.TCP = "localhost" }, "want host:port"},
		"bad http check":    {func(s *Seed) { s.Services[0].Check.HTTP = "ftp://x/" }, "want an http:// or https:// URL"},
		"bad tag":           {func(s *Seed) { s.Services[0].Tags = []string{"a b"} }, `tag "a b"`},
		"empty user-data":   {func(s *Seed) { s.ExtraUserData = []byte{}; s.ExtraUserDataName = "op.yaml" }, "op.yaml: user-data is empty"},
		"big user-data":     {func(s *Seed) { s.ExtraUserData = []byte(big); s.ExtraUserDataName = "op.yaml" }, "op.yaml: user-data is 65553 bytes, more than the 65536 allowed"},
		"no header":         {func(s *Seed) { s.ExtraUserData = []byte("runcmd: [ls]\n"); s.ExtraUserDataName = "op.yaml" }, `op.yaml: user-data must start with #cloud-config or #! (a script); its first line is "runcmd: [ls]"`},
		"cloud-configx":     {func(s *Seed) { s.ExtraUserData = []byte("#cloud-configx\n") }, "user-data: user-data must start with #cloud-config"},
		"bad yaml": {func(s *Seed) {
			s.ExtraUserData = []byte("#cloud-config\nruncmd: [ls\n")
			s.ExtraUserDataName = "op.yaml"
		}, "op.yaml: #cloud-config is not valid YAML"},
		"yaml list": {func(s *Seed) { s.ExtraUserData = []byte("#cloud-config\n- a\n"); s.ExtraUserDataName = "op.yaml" }, "op.yaml: #cloud-config must be a YAML mapping"},
		"not utf-8": {func(s *Seed) { s.ExtraUserData = []byte("#!/bin/sh\n\xff\n"); s.ExtraUserDataName = "op.sh" }, "op.sh: user-data is not UTF-8"},
	} {
		t.Run(name, func(t *testing.T) {
			s := seed()
			tc.edit(&s)
			_, _, err := NoCloud(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// The valid edge cases.
	for name, b := range map[string]string{
		"bare header":      "#cloud-config",
		"header with CRLF": "#cloud-config\r\nruncmd: [ls]\r\n",
		"script":           "#!/usr/bin/env python3\nprint(1)\n",
		"at the limit":     ("#cloud-config\n# " + strings.Repeat("x", MaxUserData))[:MaxUserData],
	} {
		if err := ValidateUserData(name, []byte(b)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestNoCloudCmdline(t *testing.T) {
	for in, want := range map[string]string{
		"http://192.0.2.1:8080/nocloud/tok/": "ds=nocloud-net;s=http://192.0.2.1:8080/nocloud/tok/",
		"http://boot.lab/nocloud/tok":        "ds=nocloud-net;s=http://boot.lab/nocloud/tok/",
		"https://[2001:db8::1]/n/t/":         "ds=nocloud-net;s=https://[2001:db8::1]/n/t/",
	} {
		got, err := NoCloudCmdline(in)
		if err != nil || got != want {
			t.Errorf("NoCloudCmdline(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://x/", "/nocloud/tok/", "http://x/a b/", "http://x/a;b/", "http:///path"} {
		if got, err := NoCloudCmdline(bad); err == nil {
			t.Errorf("NoCloudCmdline(%q) = %q, want an error", bad, got)
		}
	}
}

// TestConsulNodeNameNotMachineID: a host name equal to the machine ID (the
// deploy default) must not make the OS agent's node the inventory's node.
func TestConsulNodeNameNotMachineID(t *testing.T) {
	s := seed()
	s.Hostname = s.MachineID
	files, err := s.ConsulFiles()
	if err != nil {
		t.Fatal(err)
	}
	var agent struct {
		NodeName string            `json:"node_name"`
		NodeMeta map[string]string `json:"node_meta"`
	}
	if err := json.Unmarshal(files[ConsulConfigFile], &agent); err != nil {
		t.Fatal(err)
	}
	if agent.NodeName != s.MachineID+OSNodeSuffix || agent.NodeMeta[MetaMachine] != s.MachineID {
		t.Fatalf("node_name %q meta %v, want %q with %s=%s", agent.NodeName, agent.NodeMeta, s.MachineID+OSNodeSuffix, MetaMachine, s.MachineID)
	}
}
