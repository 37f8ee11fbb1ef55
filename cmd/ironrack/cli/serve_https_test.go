package cli

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/testca"
)

// TestServeHTTPSFlags: --https-cert/--https-key/--https-port are checked
// before anything starts, and a bad certificate or key is refused naming
// its file.
func TestServeHTTPSFlags(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, "site CA", testca.RSA)
	cert, key := ca.Issue(testca.RSA, time.Time{}, time.Time{}, "192.0.2.1").Write(t, dir, "good")
	_, otherKey := ca.Issue(testca.RSA, time.Time{}, time.Time{}, "192.0.2.1").Write(t, dir, "other")
	wrongHost, wrongHostKey := ca.Issue(testca.RSA, time.Time{}, time.Time{}, "boot.example").Write(t, dir, "name")
	expired, expiredKey := ca.Issue(testca.RSA, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour), "192.0.2.1").Write(t, dir, "expired")
	base := []string{"--interface", "lo", "--address", "192.0.2.1/24", "--data-dir", dir, "--proxy-dhcp"}
	tests := map[string]struct {
		args []string
		want string
	}{
		"port without cert":  {[]string{"--https-port", "9443"}, "--https-port needs --https-cert"},
		"cert without key":   {[]string{"--https-cert", cert}, "--https-cert needs --https-key"},
		"key without cert":   {[]string{"--https-key", key}, "--https-key needs --https-cert"},
		"port out of range":  {[]string{"--https-cert", cert, "--https-key", key, "--https-port", "0"}, "--https-port 0"},
		"port is http port":  {[]string{"--https-cert", cert, "--https-key", key, "--https-port", "8080"}, "--https-port 8080 is --http-port too"},
		"missing cert file":  {[]string{"--https-cert", dir + "/nope.pem", "--https-key", key}, dir + "/nope.pem"},
		"key of another":     {[]string{"--https-cert", cert, "--https-key", otherKey}, otherKey + ": the key does not match"},
		"expired":            {[]string{"--https-cert", expired, "--https-key", expiredKey}, expired + ": certificate"},
		"not for --address":  {[]string{"--https-cert", wrongHost, "--https-key", wrongHostKey}, "--https-cert " + wrongHost + ": the firmware fetches https://192.0.2.1/"},
		"not for --address6": {[]string{"--https-cert", cert, "--https-key", key, "--address6", "2001:db8::1/64"}, "https://2001:db8::1/"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"ironrack", "--consul", "127.0.0.1:1", "serve"}, append(append([]string{}, base...), tc.args...)...)
			err := Run(context.Background(), args, strings.NewReader(""), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("serve %s: error %v, want one containing %q", strings.Join(tc.args, " "), err, tc.want)
			}
		})
	}
}
