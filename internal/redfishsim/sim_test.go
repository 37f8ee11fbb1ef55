package redfishsim_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ironrack/ironrack/internal/redfishsim"
	"github.com/ironrack/ironrack/internal/redfishtest"
)

// TestProtocol speaks Redfish to the sim with a plain HTTP client: TLS
// with the test CA only, basic auth and sessions (login, use, logout),
// the boot override's validation, the reset types, and a Once override
// ending at the next power-on.
func TestProtocol(t *testing.T) {
	b := redfishtest.Start(t, redfishtest.Options{})
	base := fmt.Sprintf("https://%s:%d", b.Host, b.Port)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.CA.Pool()}}}
	do := func(method, path, body string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			if k == "basic" {
				u, p, _ := strings.Cut(v, ":")
				req.SetBasicAuth(u, p)
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp, string(data)
	}
	basic := map[string]string{"basic": b.Username + ":" + b.Password}
	sys := "/redfish/v1/Systems/1"

	if r, _ := do("GET", "/redfish/v1/", "", nil); r.StatusCode != 200 {
		t.Errorf("service root without auth: %d", r.StatusCode)
	}
	if r, _ := do("GET", sys, "", nil); r.StatusCode != 401 {
		t.Errorf("system without auth: %d", r.StatusCode)
	}
	if r, _ := do("GET", sys, "", map[string]string{"basic": b.Username + ":wrong"}); r.StatusCode != 401 {
		t.Errorf("wrong basic auth: %d", r.StatusCode)
	}
	r, body := do("GET", sys, "", basic)
	var s struct {
		PowerState string
		Boot       map[string]any
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil || r.StatusCode != 200 || s.PowerState != "Off" || s.Boot["BootSourceOverrideEnabled"] != "Disabled" {
		t.Fatalf("system: %d %s", r.StatusCode, body)
	}

	// A session: log in, use the token, log out, and the token is dead.
	if r, _ := do("POST", "/redfish/v1/SessionService/Sessions", `{"UserName":"admin","Password":"nope"}`, nil); r.StatusCode != 401 {
		t.Errorf("login with a wrong password: %d", r.StatusCode)
	}
	r, _ = do("POST", "/redfish/v1/SessionService/Sessions", fmt.Sprintf(`{"UserName":%q,"Password":%q}`, b.Username, b.Password), nil)
	tok, loc := r.Header.Get("X-Auth-Token"), r.Header.Get("Location")
	if r.StatusCode != 201 || tok == "" || loc == "" {
		t.Fatalf("login: %d token %q location %q", r.StatusCode, tok, loc)
	}
	sess := map[string]string{"X-Auth-Token": tok}
	if r, _ := do("GET", sys, "", sess); r.StatusCode != 200 {
		t.Errorf("system with the session: %d", r.StatusCode)
	}
	if r, _ := do("DELETE", loc, "", sess); r.StatusCode != 204 {
		t.Errorf("logout: %d", r.StatusCode)
	}
	if r, _ := do("GET", sys, "", sess); r.StatusCode != 401 {
		t.Errorf("system after logout: %d", r.StatusCode)
	}

	for body, want := range map[string]int{
		`{"Boot":{"BootSourceOverrideTarget":"Floppy"}}`:  400,
		`{"Boot":{"BootSourceOverrideEnabled":"Always"}}`: 400,
		`{"Boot":{"BootSourceOverrideMode":"CSM"}}`:       400,
		`{"AssetTag":"x"}`: 400,
		`{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI","BootNext":""}}`: 204,
	} {
		if r, got := do("PATCH", sys, body, basic); r.StatusCode != want {
			t.Errorf("PATCH %s: %d %s, want %d", body, r.StatusCode, got, want)
		}
	}
	reset := sys + "/Actions/ComputerSystem.Reset"
	if r, _ := do("POST", reset, `{"ResetType":"Explode"}`, basic); r.StatusCode != 400 {
		t.Errorf("unknown reset type: %d", r.StatusCode)
	}
	if r, _ := do("POST", reset, `{"ResetType":"ForceRestart"}`, basic); r.StatusCode != 409 {
		t.Errorf("restart of a system that is off: %d", r.StatusCode)
	}
	if r, _ := do("POST", reset, `{"ResetType":"On"}`, basic); r.StatusCode != 204 {
		t.Errorf("On: %d", r.StatusCode)
	}
	if en, tg, _ := b.Boot(); en != "Disabled" || tg != "None" {
		t.Errorf("a Once override outlived the power-on: %s %s", en, tg)
	}
	if on, _ := b.Chassis.Power(); !on || b.Resets() != 2 {
		t.Errorf("power %v after On, %d resets received", on, b.Resets())
	}
}

func TestParseQuirk(t *testing.T) {
	for _, q := range redfishsim.Quirks {
		if got, err := redfishsim.ParseQuirk(string(q)); err != nil || got != q {
			t.Errorf("%s: %v %v", q, got, err)
		}
	}
	if q, err := redfishsim.ParseQuirk("none"); err != nil || q != redfishsim.QuirkNone {
		t.Errorf("none: %v %v", q, err)
	}
	if _, err := redfishsim.ParseQuirk("sulk"); err == nil {
		t.Error("an unknown quirk parsed")
	}
}
