// Package redfishsim is a small Redfish BMC for tests and the lab, as
// OpenIPMI's ipmi_sim stands in for IPMI BMCs (no Redfish emulator that
// changes state can be installed here: see docs/lab.md).
//
// It serves, over TLS only, what bmclib's gofish provider uses: the service
// root, sessions (POST to log in, DELETE to log out) and HTTP basic auth,
// the Systems collection with one ComputerSystem carrying PowerState and
// Boot, the Boot override PATCH (BootSourceOverrideEnabled
// Disabled/Once/Continuous, BootSourceOverrideTarget None/Pxe/Hdd/BiosSetup/
// Cd, BootSourceOverrideMode UEFI/Legacy), and the ComputerSystem.Reset
// action with the reset types bmclib sends (On, ForceOff,
// GracefulShutdown, ForceRestart, PowerCycle, plus GracefulRestart,
// PushPowerButton, Nmi). Power acts on a Chassis: in the lab a DirChassis,
// whose files the lab's supervisor follows to start and stop the VM, as
// with ipmi_sim's chassis control.
//
// Quirks, one per BMC, each with a fixed delay, reproduce what real BMCs do
// and what ironrack must classify (see docs/bmc.md):
//
//	slow-power    power changes applied after 3 s       -> ok (within the deadline)
//	late-power    power changes applied after 20 s      -> not-applied
//	revert-boot   boot override reverted after 500 ms   -> reverted
//	ignore-reset  Reset answered 204, never applied     -> not-applied
//	stall         every request hangs, no answer        -> timeout
//
// The package imports no test harness, so the lab can run it (`ironrack
// lab redfish-bmc`).
package redfishsim

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Quirk is a misbehaviour a BMC can be started with.
type Quirk string

const (
	QuirkNone        Quirk = ""
	QuirkSlowPower   Quirk = "slow-power"
	QuirkLatePower   Quirk = "late-power"
	QuirkRevertBoot  Quirk = "revert-boot"
	QuirkIgnoreReset Quirk = "ignore-reset"
	QuirkStall       Quirk = "stall"
)

// Quirks are all the quirks, in the order docs list them.
var Quirks = []Quirk{QuirkSlowPower, QuirkLatePower, QuirkRevertBoot, QuirkIgnoreReset, QuirkStall}

// ParseQuirk reads a quirk's name; "" and "none" are QuirkNone.
func ParseQuirk(s string) (Quirk, error) {
	if s == "" || s == "none" {
		return QuirkNone, nil
	}
	for _, q := range Quirks {
		if string(q) == s {
			return q, nil
		}
	}
	names := make([]string, len(Quirks))
	for i, q := range Quirks {
		names[i] = string(q)
	}
	return "", fmt.Errorf("unknown quirk %q (want none, %s)", s, strings.Join(names, ", "))
}

// Delays are the quirks' fixed delays. The zero value of each field is the
// documented delay; tests shorten them to stay fast.
type Delays struct {
	// SlowPower: slow-power applies a power change after it. If 0, 3s.
	SlowPower time.Duration
	// LatePower: late-power applies a power change after it. If 0, 20s.
	LatePower time.Duration
	// RevertBoot: revert-boot puts the old override back after it. If 0,
	// 500ms.
	RevertBoot time.Duration
	// CycleOff is how long PowerCycle keeps the machine off. If 0, 1s.
	CycleOff time.Duration
}

func (d Delays) withDefaults() Delays {
	def := func(v *time.Duration, x time.Duration) {
		if *v <= 0 {
			*v = x
		}
	}
	def(&d.SlowPower, 3*time.Second)
	def(&d.LatePower, 20*time.Second)
	def(&d.RevertBoot, 500*time.Millisecond)
	def(&d.CycleOff, time.Second)
	return d
}

// Server is one Redfish BMC. Set the fields, then call Serve once.
type Server struct {
	// Listener is where it serves (TLS is added on top). Required.
	Listener net.Listener
	// Certificate is its TLS certificate. Required.
	Certificate tls.Certificate
	// Username and Password are its one account. Required.
	Username, Password string
	// Chassis is the machine it powers. Required.
	Chassis Chassis
	// Quirk is its misbehaviour, if any.
	Quirk Quirk
	// Delays are the quirks' delays; the zero value is the documented one.
	Delays Delays
	// SystemID is the system's ID in Systems/{id}. If empty, "1".
	SystemID string
	// Serial is the system's SerialNumber. May be empty.
	Serial string
	// Logger receives one line per request. If nil, logs are discarded.
	Logger *slog.Logger

	mu       sync.Mutex
	sessions map[string]string // token -> session ID
	nextSess int
	boot     bootOverride
	resets   int // Reset actions received
	ctx      context.Context
	wg       sync.WaitGroup
}

type bootOverride struct {
	Enabled string // Disabled, Once, Continuous
	Target  string // None, Pxe, Hdd, BiosSetup, Cd
	Mode    string // UEFI, Legacy
}

// Serve answers until ctx ends, then closes the listener, waits for the
// delayed power changes it scheduled to give up, and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	if s.Listener == nil || s.Chassis == nil || len(s.Certificate.Certificate) == 0 || s.Username == "" {
		return errors.New("redfishsim: Listener, Certificate, Username and Chassis are required")
	}
	s.mu.Lock()
	s.sessions = map[string]string{}
	s.boot = bootOverride{Enabled: "Disabled", Target: "None", Mode: "UEFI"}
	s.Delays = s.Delays.withDefaults()
	if s.SystemID == "" {
		s.SystemID = "1"
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	s.ctx = ctx
	s.mu.Unlock()
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	ln := tls.NewListener(s.Listener, &tls.Config{Certificates: []tls.Certificate{s.Certificate}, MinVersion: tls.VersionTLS12})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		s.wg.Wait()
		return fmt.Errorf("redfishsim: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = srv.Close()
	<-errc
	s.wg.Wait()
	return nil
}

// Resets is how many Reset actions with a valid ResetType the BMC
// received, applied or not.
func (s *Server) Resets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resets
}

// Boot is the boot override as the BMC holds it: enabled, target, mode.
func (s *Server) Boot() (enabled, target, mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.boot.Enabled, s.boot.Target, s.boot.Mode
}

const (
	root       = "/redfish/v1"
	sessionsP  = root + "/SessionService/Sessions"
	systemsP   = root + "/Systems"
	managersP  = root + "/Managers"
	resetTypes = "On ForceOff GracefulShutdown ForceRestart GracefulRestart PowerCycle PushPowerButton Nmi"
)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.Logger.Debug("request", "method", r.Method, "path", r.URL.Path, "quirk", s.Quirk)
	if s.Quirk == QuirkStall {
		<-r.Context().Done() // a hung BMC: the client's deadline ends it
		return
	}
	p := strings.TrimSuffix(r.URL.Path, "/")
	sys := systemsP + "/" + s.SystemID
	switch {
	case p == root && r.Method == http.MethodGet:
		s.serviceRoot(w)
		return
	case p == sessionsP && r.Method == http.MethodPost:
		s.login(w, r)
		return
	}
	if !s.authorized(r) {
		redfishError(w, http.StatusUnauthorized, "Base.1.8.NoValidSession", "log in with a session (POST "+sessionsP+") or HTTP basic auth")
		return
	}
	switch {
	case strings.HasPrefix(p, sessionsP+"/") && r.Method == http.MethodDelete:
		s.logout(w, strings.TrimPrefix(p, sessionsP+"/"))
	case strings.HasPrefix(p, sessionsP+"/") && r.Method == http.MethodGet:
		writeJSON(w, map[string]any{"@odata.id": p, "Id": strings.TrimPrefix(p, sessionsP+"/"), "UserName": s.Username})
	case p == sessionsP && r.Method == http.MethodGet:
		s.mu.Lock()
		var members []map[string]string
		for _, id := range s.sessions {
			members = append(members, map[string]string{"@odata.id": sessionsP + "/" + id})
		}
		s.mu.Unlock()
		writeJSON(w, collection(sessionsP, "SessionCollection", members))
	case p == systemsP && r.Method == http.MethodGet:
		writeJSON(w, collection(systemsP, "ComputerSystemCollection", []map[string]string{{"@odata.id": sys}}))
	case p == managersP && r.Method == http.MethodGet:
		writeJSON(w, collection(managersP, "ManagerCollection", []map[string]string{}))
	case p == sys && r.Method == http.MethodGet:
		s.system(w, sys)
	case p == sys && r.Method == http.MethodPatch:
		s.patchSystem(w, r)
	case p == sys+"/Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
		s.reset(w, r)
	default:
		redfishError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", r.Method+" "+r.URL.Path+" is not served")
	}
}

func (s *Server) serviceRoot(w http.ResponseWriter) {
	writeJSON(w, map[string]any{
		"@odata.id":      root,
		"@odata.type":    "#ServiceRoot.v1_11_0.ServiceRoot",
		"Id":             "RootService",
		"Name":           "ironrack redfishsim",
		"RedfishVersion": "1.11.0",
		"UUID":           "00000000-0000-0000-0000-000000000000",
		"Systems":        map[string]string{"@odata.id": systemsP},
		"Managers":       map[string]string{"@odata.id": managersP},
		"SessionService": map[string]string{"@odata.id": root + "/SessionService"},
		"Links":          map[string]any{"Sessions": map[string]string{"@odata.id": sessionsP}},
	})
}

func (s *Server) credentialsOK(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(s.Username))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(s.Password))
	return u&p == 1
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var body struct{ UserName, Password string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&body); err != nil {
		redfishError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", err.Error())
		return
	}
	if !s.credentialsOK(body.UserName, body.Password) {
		redfishError(w, http.StatusUnauthorized, "Base.1.8.InsufficientPrivilege", "invalid username or password")
		return
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	s.mu.Lock()
	s.nextSess++
	id := fmt.Sprint(s.nextSess)
	s.sessions[hex.EncodeToString(tok)] = id
	s.mu.Unlock()
	w.Header().Set("X-Auth-Token", hex.EncodeToString(tok))
	w.Header().Set("Location", sessionsP+"/"+id)
	w.WriteHeader(http.StatusCreated)
	writeBody(w, map[string]any{"@odata.id": sessionsP + "/" + id, "Id": id, "UserName": s.Username})
}

func (s *Server) logout(w http.ResponseWriter, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, sid := range s.sessions {
		if sid == id {
			delete(s.sessions, tok)
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	redfishError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "no session "+id)
}

func (s *Server) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.sessions[tok]
		return ok
	}
	if u, p, ok := r.BasicAuth(); ok {
		return s.credentialsOK(u, p)
	}
	return false
}

func (s *Server) system(w http.ResponseWriter, sys string) {
	on, err := s.Chassis.Power()
	if err != nil {
		redfishError(w, http.StatusInternalServerError, "Base.1.8.InternalError", "read power: "+err.Error())
		return
	}
	state := "Off"
	if on {
		state = "On"
	}
	s.mu.Lock()
	b := s.boot
	s.mu.Unlock()
	writeJSON(w, map[string]any{
		"@odata.id":    sys,
		"@odata.type":  "#ComputerSystem.v1_13_0.ComputerSystem",
		"Id":           s.SystemID,
		"Name":         "System",
		"Manufacturer": "ironrack",
		"Model":        "redfishsim",
		"SerialNumber": s.Serial,
		"PowerState":   state,
		"Boot": map[string]any{
			"BootSourceOverrideEnabled":                        b.Enabled,
			"BootSourceOverrideTarget":                         b.Target,
			"BootSourceOverrideMode":                           b.Mode,
			"BootSourceOverrideTarget@Redfish.AllowableValues": []string{"None", "Pxe", "Hdd", "BiosSetup", "Cd"},
		},
		"Actions": map[string]any{
			"#ComputerSystem.Reset": map[string]any{
				"target":                            sys + "/Actions/ComputerSystem.Reset",
				"ResetType@Redfish.AllowableValues": strings.Fields(resetTypes),
			},
		},
	})
}

func (s *Server) patchSystem(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Boot *struct {
			BootSourceOverrideEnabled, BootSourceOverrideTarget, BootSourceOverrideMode string
		}
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&body); err != nil {
		redfishError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", err.Error())
		return
	}
	if body.Boot == nil {
		redfishError(w, http.StatusBadRequest, "Base.1.8.PropertyMissing", "only Boot can be patched")
		return
	}
	b := body.Boot
	check := func(name, v string, allowed ...string) bool {
		if v == "" {
			return true
		}
		for _, a := range allowed {
			if v == a {
				return true
			}
		}
		redfishError(w, http.StatusBadRequest, "Base.1.8.PropertyValueNotInList", fmt.Sprintf("%s %q: want one of %v", name, v, allowed))
		return false
	}
	if !check("BootSourceOverrideEnabled", b.BootSourceOverrideEnabled, "Disabled", "Once", "Continuous") ||
		!check("BootSourceOverrideTarget", b.BootSourceOverrideTarget, "None", "Pxe", "Hdd", "BiosSetup", "Cd") ||
		!check("BootSourceOverrideMode", b.BootSourceOverrideMode, "UEFI", "Legacy") {
		return
	}
	s.mu.Lock()
	old := s.boot
	if b.BootSourceOverrideEnabled != "" {
		s.boot.Enabled = b.BootSourceOverrideEnabled
	}
	if b.BootSourceOverrideTarget != "" {
		s.boot.Target = b.BootSourceOverrideTarget
	}
	if b.BootSourceOverrideMode != "" {
		s.boot.Mode = b.BootSourceOverrideMode
	}
	set := s.boot
	s.mu.Unlock()
	if s.Quirk == QuirkRevertBoot {
		s.later(s.Delays.RevertBoot, func() error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.boot == set {
				s.boot = old
			}
			return nil
		})
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) reset(w http.ResponseWriter, r *http.Request) {
	var body struct{ ResetType string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&body); err != nil {
		redfishError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", err.Error())
		return
	}
	if !strings.Contains(" "+resetTypes+" ", " "+body.ResetType+" ") {
		redfishError(w, http.StatusBadRequest, "Base.1.8.ActionParameterNotSupported", fmt.Sprintf("ResetType %q: want one of %s", body.ResetType, resetTypes))
		return
	}
	on, err := s.Chassis.Power()
	if err != nil {
		redfishError(w, http.StatusInternalServerError, "Base.1.8.InternalError", "read power: "+err.Error())
		return
	}
	s.mu.Lock()
	s.resets++
	s.mu.Unlock()
	if s.Quirk == QuirkIgnoreReset {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var apply func() error
	switch body.ResetType {
	case "On":
		apply = func() error { return s.power(true) }
	case "ForceOff", "GracefulShutdown":
		apply = func() error { return s.power(false) }
	case "PushPowerButton":
		apply = func() error { return s.power(!on) }
	case "ForceRestart", "GracefulRestart":
		if !on {
			redfishError(w, http.StatusConflict, "Base.1.8.ActionNotSupported", body.ResetType+" of a system that is off")
			return
		}
		apply = s.restart
	case "PowerCycle":
		apply = func() error {
			if err := s.power(false); err != nil {
				return err
			}
			s.later(s.Delays.CycleOff, func() error { return s.power(true) })
			return nil
		}
	case "Nmi":
		apply = func() error { return nil }
	}
	switch s.Quirk {
	case QuirkSlowPower:
		s.later(s.Delays.SlowPower, apply)
	case QuirkLatePower:
		s.later(s.Delays.LatePower, apply)
	default:
		if err := apply(); err != nil {
			redfishError(w, http.StatusInternalServerError, "Base.1.8.InternalError", err.Error())
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// power sets the chassis power; a power-on consumes a one-time override.
func (s *Server) power(on bool) error {
	was, err := s.Chassis.Power()
	if err != nil {
		return err
	}
	if on && !was {
		s.bootConsumed()
	}
	return s.Chassis.SetPower(on)
}

func (s *Server) restart() error {
	s.bootConsumed()
	return s.Chassis.Reset()
}

// bootConsumed ends a Once override: the boot it was for has started.
func (s *Server) bootConsumed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.boot.Enabled == "Once" {
		s.boot.Enabled, s.boot.Target = "Disabled", "None"
	}
}

// later runs fn after d unless Serve's ctx ends first; Serve waits for it.
func (s *Server) later(d time.Duration, fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-s.ctx.Done():
		case <-t.C:
			if err := fn(); err != nil {
				s.Logger.Error("delayed change failed", "err", err)
			}
		}
	}()
}

func collection(id, typ string, members []map[string]string) map[string]any {
	return map[string]any{"@odata.id": id, "@odata.type": "#" + typ + "." + typ, "Name": typ,
		"Members": members, "Members@odata.count": len(members)}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	writeBody(w, v)
}

func writeBody(w http.ResponseWriter, v any) {
	_ = json.NewEncoder(w).Encode(v)
}

func redfishError(w http.ResponseWriter, code int, id, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	writeBody(w, map[string]any{"error": map[string]any{"code": id, "message": msg,
		"@Message.ExtendedInfo": []map[string]string{{"MessageId": id, "Message": msg}}}})
}
