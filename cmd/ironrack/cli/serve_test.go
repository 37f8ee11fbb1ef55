package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeFlags checks that every malformed `ironrack serve` invocation
// fails before touching the network, with an error naming the flag.
func TestServeFlags(t *testing.T) {
	dir := t.TempDir()
	base := []string{"--interface", "lo", "--address", "192.0.2.1/24", "--data-dir", dir}
	tests := map[string]struct {
		args []string
		want string
	}{
		"no interface":        {[]string{"--address", "192.0.2.1/24", "--proxy-dhcp"}, "--interface is required"},
		"no address":          {[]string{"--interface", "lo", "--proxy-dhcp"}, "--address is required"},
		"address no prefix":   {[]string{"--interface", "lo", "--address", "192.0.2.1", "--proxy-dhcp"}, `--address "192.0.2.1"`},
		"address ipv6":        {[]string{"--interface", "lo", "--address", "2001:db8::1/64", "--proxy-dhcp"}, "want an IPv4 address with prefix"},
		"address /32":         {[]string{"--interface", "lo", "--address", "192.0.2.1/32", "--proxy-dhcp"}, "leaves no room"},
		"network address":     {[]string{"--interface", "lo", "--address", "192.0.2.0/24", "--proxy-dhcp"}, "network address"},
		"neither mode":        {base, "need exactly one of --dhcp-range"},
		"both modes":          {append(base, "--proxy-dhcp", "--dhcp-range", "192.0.2.10-192.0.2.20"), "exclude each other"},
		"range malformed":     {append(base, "--dhcp-range", "192.0.2.10"), `--dhcp-range "192.0.2.10"`},
		"range reversed":      {append(base, "--dhcp-range", "192.0.2.20-192.0.2.10"), "FIRST is after LAST"},
		"range outside":       {append(base, "--dhcp-range", "198.51.100.10-198.51.100.20"), "not inside --address's subnet"},
		"router outside":      {append(base, "--proxy-dhcp", "--router", "10.9.9.9"), "--router 10.9.9.9 is not inside"},
		"router malformed":    {append(base, "--proxy-dhcp", "--router", "gw"), `--router "gw"`},
		"dns malformed":       {append(base, "--proxy-dhcp", "--dns", "192.0.2.53,nope"), `"nope" is not an IPv4 address`},
		"lease short":         {append(base, "--dhcp-range", "192.0.2.10-192.0.2.20", "--lease-time", "5s"), "--lease-time 5s"},
		"lease in proxy":      {append(base, "--proxy-dhcp", "--lease-time", "2h"), "--lease-time applies to --dhcp-range only"},
		"http port":           {append(base, "--proxy-dhcp", "--http-port", "70000"), "--http-port 70000"},
		"pprof alias":         {append(base, "--proxy-dhcp", "--pprof-address", "0.0.0.0:6060"), `--pprof: pprof address "0.0.0.0:6060": "0.0.0.0" is not a loopback address`},
		"data dir missing":    {[]string{"--interface", "lo", "--address", "192.0.2.1/24", "--proxy-dhcp", "--data-dir", dir + "/nope"}, "--data-dir " + dir + "/nope"},
		"no such interface":   {[]string{"--interface", "nosuch0", "--address", "192.0.2.1/24", "--proxy-dhcp", "--data-dir", dir}, "--interface nosuch0"},
		"stray argument":      {append(base, "--proxy-dhcp", "extra"), `unexpected argument "extra"`},
		"range6 no address6":  {append(base, "--proxy-dhcp", "--dhcp6-range", "2001:db8::10-2001:db8::20"), "--dhcp6-range needs --address6"},
		"router6 no address6": {append(base, "--proxy-dhcp", "--ipv6-router"), "--ipv6-router needs --address6"},
		"dns6 no address6":    {append(base, "--proxy-dhcp", "--dns6", "2001:db8::53"), "--dns6 needs --address6"},
		"address6 ipv4":       {append(base, "--proxy-dhcp", "--address6", "192.0.2.1/24"), `--address6 "192.0.2.1/24": want an IPv6`},
		"address6 no prefix":  {append(base, "--proxy-dhcp", "--address6", "2001:db8::1"), `--address6 "2001:db8::1"`},
		"address6 link-local": {append(base, "--proxy-dhcp", "--address6", "fe80::1/64"), "not link-local"},
		"stateless not /64":   {append(base, "--proxy-dhcp", "--address6", "2001:db8::1/80"), "needs a /64 for SLAAC"},
		"range6 malformed":    {append(base, "--proxy-dhcp", "--address6", "2001:db8::1/64", "--dhcp6-range", "2001:db8::10"), `--dhcp6-range "2001:db8::10"`},
		"range6 reversed":     {append(base, "--proxy-dhcp", "--address6", "2001:db8::1/64", "--dhcp6-range", "2001:db8::20-2001:db8::10"), "FIRST is after LAST"},
		"range6 outside":      {append(base, "--proxy-dhcp", "--address6", "2001:db8::1/64", "--dhcp6-range", "2001:db8:1::10-2001:db8:1::20"), "not inside --address6's prefix"},
		"range6 ipv4":         {append(base, "--proxy-dhcp", "--address6", "2001:db8::1/64", "--dhcp6-range", "192.0.2.10-192.0.2.20"), "two IPv6 addresses"},
		"pprof not loopback":  {append(base, "--proxy-dhcp", "--pprof", "0.0.0.0:6060"), `--pprof: pprof address "0.0.0.0:6060": "0.0.0.0" is not a loopback address`},
		"pprof no port":       {append(base, "--proxy-dhcp", "--pprof", "127.0.0.1"), `--pprof: pprof address "127.0.0.1": want HOST:PORT`},
		"no-dhcp4 with range": {append(base, "--no-dhcp4", "--dhcp-range", "192.0.2.10-192.0.2.20"), "--no-dhcp4 excludes --dhcp-range and --proxy-dhcp"},
		"no-dhcp4 with proxy": {append(base, "--no-dhcp4", "--proxy-dhcp"), "--no-dhcp4 excludes"},
		"no-dhcp4 stateless":  {append(base, "--no-dhcp4", "--address6", "2001:db8::1/64"), "--no-dhcp4 needs --address6 and --dhcp6-range"},
		"no-dhcp4 no v6":      {append(base, "--no-dhcp4"), "--no-dhcp4 needs --address6 and --dhcp6-range"},
		"dns6 malformed":      {append(base, "--proxy-dhcp", "--address6", "2001:db8::1/64", "--dns6", "2001:db8::53,192.0.2.53"), `"192.0.2.53" is not an IPv6 address`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errOut bytes.Buffer
			args := append([]string{"ironrack", "--consul", "127.0.0.1:1", "serve"}, tc.args...)
			err := Run(ctx, args, strings.NewReader(""), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("serve %s: error %v, want one containing %q", strings.Join(tc.args, " "), err, tc.want)
			}
		})
	}
	// A key file that exists is loaded, and a bad one refused at start
	// (a missing one is not created: the boot server runs without).
	t.Run("key file readable by others", func(t *testing.T) {
		kf := filepath.Join(dir, "key")
		if err := os.WriteFile(kf, []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"ironrack", "--consul", "127.0.0.1:1", "--key-file", kf, "serve"}, append(base, "--proxy-dhcp")...)
		err := Run(context.Background(), args, strings.NewReader(""), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), kf) || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("serve with a 0644 key file: %v", err)
		}
	})
}
