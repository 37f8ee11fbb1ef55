package inventory

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
)

// SheetRow is one parsed row of a rack sheet.
type SheetRow struct {
	Line          int
	Rack, Slot    string
	Serial        string
	BMCAddress    string
	BMCPort       int // 0: the protocol's default
	BMCProtocol   string
	BMCUsername   string
	BMCPassword   string // never logged or printed
	BMCCredential string // a credential reference
	// BMCTLS is bmc_tls: "", "insecure", a pin ("sha256:HEX"), or
	// TLSPinAtImport, which the caller must replace with the pin the
	// operator confirmed before Import.
	BMCTLS        string
	Vendor, Model string
	UHeight       int    // 0: not given
	Face          string // "": not given
	MACs          []string
	Tags          map[string]string
	// has records which optional columns the sheet carries.
	has map[string]bool
}

// String never includes the password.
func (r SheetRow) String() string {
	return fmt.Sprintf("line %d: %s/%s serial %s", r.Line, r.Rack, r.Slot, r.Serial)
}

// LineError is one problem in an input file, printed as FILE:LINE: column: problem.
type LineError struct {
	File    string
	Line    int
	Column  string
	Problem string
}

func (e *LineError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Problem)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Column, e.Problem)
}

// SheetErrors is every problem of a sheet; nothing was stored.
type SheetErrors []*LineError

func (es SheetErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Sheet column names.
var (
	requiredColumns = []string{"rack", "slot", "serial", "bmc_address", "bmc_username"}
	optionalColumns = []string{"bmc_password", "bmc_credential_ref", "bmc_port", "bmc_protocol", "bmc_tls", "vendor", "model", "u_height", "face", "macs", "tags"}
)

// MaxSheetRows bounds a rack sheet.
const MaxSheetRows = 100000

// ParseSheet reads a rack sheet (CSV with a header row). It checks each row
// on its own and the rows against each other (a serial, MAC, BMC address or
// rack/slot twice); checks against the inventory come later, in Import. It
// returns every problem, not just the first.
func ParseSheet(file string, r io.Reader) ([]SheetRow, error) {
	data, err := io.ReadAll(io.LimitReader(r, 64<<20+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(data) > 64<<20 {
		return nil, SheetErrors{{File: file, Line: 1, Problem: "file larger than 64 MiB"}}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = 0
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = false
	var errs SheetErrors
	add := func(line int, col, format string, a ...any) {
		errs = append(errs, &LineError{File: file, Line: line, Column: col, Problem: fmt.Sprintf(format, a...)})
	}
	header, err := cr.Read()
	if err == io.EOF {
		return nil, SheetErrors{{File: file, Line: 1, Problem: "empty file: want a header row " + strings.Join(requiredColumns, ",") + ",bmc_password|bmc_credential_ref"}}
	}
	if err != nil {
		return nil, SheetErrors{csvError(file, err)}
	}
	col := map[string]int{}
	known := map[string]bool{}
	for _, c := range append(append([]string{}, requiredColumns...), optionalColumns...) {
		known[c] = true
	}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if !known[h] {
			add(1, h, "unknown column (known: %s)", strings.Join(append(append([]string{}, requiredColumns...), optionalColumns...), ", "))
			continue
		}
		if _, dup := col[h]; dup {
			add(1, h, "column appears twice")
			continue
		}
		col[h] = i
	}
	for _, c := range requiredColumns {
		if _, ok := col[c]; !ok {
			add(1, c, "required column missing")
		}
	}
	_, hasPW := col["bmc_password"]
	_, hasRef := col["bmc_credential_ref"]
	if !hasPW && !hasRef {
		add(1, "bmc_password", "need a bmc_password or a bmc_credential_ref column")
	}
	if len(errs) > 0 {
		return nil, errs
	}
	has := map[string]bool{}
	for c := range col {
		has[c] = true
	}

	var rows []SheetRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
				line, _ := cr.FieldPos(0)
				add(line, "", "has %d fields, the header has %d", len(rec), len(header))
				continue
			}
			errs = append(errs, csvError(file, err))
			break
		}
		line, _ := cr.FieldPos(0)
		if len(rows) >= MaxSheetRows {
			add(line, "", "more than %d rows", MaxSheetRows)
			break
		}
		get := func(c string) string {
			if i, ok := col[c]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		row := SheetRow{Line: line, has: has,
			Rack: get("rack"), Slot: get("slot"), Serial: get("serial"),
			BMCAddress: get("bmc_address"), BMCUsername: get("bmc_username"),
			BMCProtocol: strings.ToLower(get("bmc_protocol")), Vendor: get("vendor"), Model: get("model")}
		if i, ok := col["bmc_password"]; ok && i < len(rec) {
			row.BMCPassword = rec[i] // passwords keep their spaces
		}
		row.BMCCredential = get("bmc_credential_ref")
		for _, c := range requiredColumns {
			if get(c) == "" {
				add(line, c, "is empty")
			}
		}
		switch {
		case row.BMCPassword != "" && row.BMCCredential != "":
			add(line, "bmc_password", "give bmc_password or bmc_credential_ref, not both")
		case row.BMCPassword == "" && row.BMCCredential == "":
			add(line, "bmc_password", "is empty (and so is bmc_credential_ref)")
		}
		if len(row.BMCPassword) > 64 || strings.ContainsAny(row.BMCPassword, "\x00\n\r") {
			add(line, "bmc_password", "longer than 64 bytes or has control characters")
		}
		if row.BMCProtocol == "" {
			row.BMCProtocol = ProtocolIPMI
		}
		if v := get("bmc_tls"); strings.EqualFold(v, TLSPinAtImport) {
			row.BMCTLS = TLSPinAtImport
		} else if row.BMCTLS, err = ParseTLS(v); err != nil {
			add(line, "bmc_tls", "%v", err)
		}
		if p := get("bmc_port"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				add(line, "bmc_port", "%q is not a port number (1-65535)", p)
			} else {
				row.BMCPort = n
			}
		}
		if u := get("u_height"); u != "" {
			n, err := strconv.Atoi(u)
			if err != nil || n < 1 || n > MaxRackHeight {
				add(line, "u_height", "%q is not a height in rack units (1-%d)", u, MaxRackHeight)
			} else {
				row.UHeight = n
			}
		}
		row.Face = strings.ToLower(get("face"))
		if a := row.BMCAddress; a != "" && !validHost(a) {
			add(line, "bmc_address", "%q is not an IP address or host name", a)
		}
		if m := get("macs"); m != "" {
			for _, part := range strings.Split(m, ";") {
				if strings.TrimSpace(part) == "" {
					continue
				}
				mac, err := NormalizeMAC(part)
				if err != nil {
					add(line, "macs", "%v", err)
					continue
				}
				row.MACs = append(row.MACs, mac)
			}
		}
		if t := get("tags"); t != "" {
			row.Tags = map[string]string{}
			for _, part := range strings.Split(t, ";") {
				if strings.TrimSpace(part) == "" {
					continue
				}
				k, v, ok := strings.Cut(part, "=")
				k, v = strings.TrimSpace(k), strings.TrimSpace(v)
				if !ok || !tagKeyRE.MatchString(k) {
					add(line, "tags", "%q is not key=value (keys: letters, digits, _.-)", part)
					continue
				}
				if _, dup := row.Tags[k]; dup {
					add(line, "tags", "tag %s given twice", k)
				}
				row.Tags[k] = v
			}
		}
		// Field checks shared with every other writer of a Machine.
		probe := row.machine(MachineID(row.Serial), nil)
		if probe.BMC.TLS == TLSPinAtImport {
			probe.BMC.TLS = TLSInsecure // checked as any other value; the importer resolves it
		}
		for _, fe := range probe.Validate() {
			if fe.Field == "id" || fe.Field == "state" || strings.HasPrefix(fe.Field, "nics") {
				continue
			}
			if fe.Field == "bmc_username" && row.BMCUsername == "" || fe.Field == "serial" && row.Serial == "" ||
				fe.Field == "bmc_address" && row.BMCAddress == "" {
				continue // reported as empty above
			}
			if fe.Field == "bmc_address" && strings.HasPrefix(fe.Problem, "malformed") {
				continue // reported above
			}
			if fe.Field == "slot" && (row.Rack == "" || row.Slot == "") {
				continue
			}
			add(line, fe.Field, "%s", fe.Problem)
		}
		rows = append(rows, row)
	}
	errs = append(errs, crossCheck(file, rows)...)
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	return rows, nil
}

func csvError(file string, err error) *LineError {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &LineError{File: file, Line: pe.Line, Problem: "malformed CSV: " + pe.Err.Error()}
	}
	return &LineError{File: file, Line: 1, Problem: err.Error()}
}

// crossCheck finds keys that two rows of one sheet both claim.
func crossCheck(file string, rows []SheetRow) []*LineError {
	var errs []*LineError
	maps := map[string]map[string]int{}
	claim := func(kind, col, key string, line int) {
		if key == "" {
			return
		}
		m := maps[kind]
		if m == nil {
			m = map[string]int{}
			maps[kind] = m
		}
		if first, ok := m[key]; ok {
			errs = append(errs, &LineError{File: file, Line: line, Column: col, Problem: fmt.Sprintf("%s %s also on line %d", kind, key, first)})
			return
		}
		m[key] = line
	}
	for _, r := range rows {
		claim("serial", "serial", r.Serial, r.Line)
		for _, mac := range r.MACs {
			claim("MAC", "macs", mac, r.Line)
		}
		if r.BMCAddress != "" {
			port := r.BMCPort
			if port == 0 {
				port = DefaultPort(r.BMCProtocol)
			}
			claim("BMC address", "bmc_address", net.JoinHostPort(r.BMCAddress, strconv.Itoa(port)), r.Line)
		}
		if r.Rack != "" && r.Slot != "" {
			claim("rack/slot", "slot", r.Rack+"/"+r.Slot, r.Line)
		}
	}
	return errs
}

// machine applies the row onto a copy of prev (nil: a new machine). Empty
// optional cells leave the field as it was; MACs and tags are merged.
func (r *SheetRow) machine(id string, prev *Machine) *Machine {
	var m *Machine
	if prev == nil {
		m = &Machine{ID: id, State: StateNew, Source: "import"}
		m.normalize()
	} else {
		m = prev.Clone()
	}
	m.Serial, m.Rack, m.Slot = r.Serial, r.Rack, r.Slot
	m.BMC.Address, m.BMC.Username, m.BMC.Protocol = r.BMCAddress, r.BMCUsername, r.BMCProtocol
	m.BMC.Port = r.BMCPort
	if m.BMC.Port == 0 {
		m.BMC.Port = DefaultPort(r.BMCProtocol)
	}
	if r.BMCCredential != "" {
		m.BMC.CredentialRef = r.BMCCredential
	} else {
		m.BMC.CredentialRef = credRefFor(id)
	}
	if r.has["bmc_tls"] {
		m.BMC.TLS = r.BMCTLS
	}
	if r.UHeight != 0 {
		m.UHeight = r.UHeight
	}
	if r.Face != "" {
		m.Face = r.Face
	}
	if r.Vendor != "" {
		m.Vendor = r.Vendor
	}
	if r.Model != "" {
		m.Model = r.Model
	}
	for _, mac := range r.MACs {
		found := false
		for _, n := range m.NICs {
			if n.MAC == mac {
				found = true
			}
		}
		if !found {
			m.NICs = append(m.NICs, NIC{MAC: mac, Primary: len(m.NICs) == 0})
		}
	}
	for k, v := range r.Tags {
		m.Tags[k] = v
	}
	return m
}

// exportColumns is the header WriteSheet writes; ParseSheet reads it back.
var exportColumns = []string{"rack", "slot", "serial", "bmc_address", "bmc_port", "bmc_protocol", "bmc_username", "bmc_credential_ref", "bmc_tls", "vendor", "model", "u_height", "face", "macs", "tags"}

// sheetExcluded are the machine fields (JSON paths; a path covers the
// fields under it) that a rack sheet does not carry: the ID comes from the
// serial, the hardware facts from discovery, the rest from the lifecycle.
// Every other field is written by WriteSheet and read back by ParseSheet;
// TestMachineFieldsCarried fails when one is not.
var sheetExcluded = []string{"id", "uuid", "firmware", "nics.name", "nics.primary", "nics.speed_mbps", "nics.driver",
	"ip", "cpu_model", "cpu_cores", "mem_gb", "disks", "state", "tier", "owner", "source", "drift", "host_keys",
	"host_certs", "created_at", "updated_at"}

// WriteSheet writes machines as a rack sheet that Import reads back. It
// writes credential references, never passwords. Machines a sheet cannot
// describe (no rack, serial or BMC yet, e.g. enlisted by PXE) are skipped and
// returned.
func WriteSheet(w io.Writer, ms []*Machine) (skipped []*Machine, err error) {
	cw := csv.NewWriter(w)
	if err := cw.Write(exportColumns); err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.Rack == "" || m.Serial == "" || m.BMC.Address == "" || m.BMC.CredentialRef == "" {
			skipped = append(skipped, m)
			continue
		}
		macs := make([]string, len(m.NICs))
		for i, n := range m.NICs {
			macs[i] = n.MAC
		}
		keys := make([]string, 0, len(m.Tags))
		for k := range m.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		tags := make([]string, len(keys))
		for i, k := range keys {
			tags[i] = k + "=" + m.Tags[k]
		}
		rec := []string{m.Rack, m.Slot, m.Serial, m.BMC.Address, strconv.Itoa(m.BMC.Port), m.BMC.Protocol,
			m.BMC.Username, m.BMC.CredentialRef, m.BMC.TLS, m.Vendor, m.Model, positive(m.UHeight), m.Face, strings.Join(macs, ";"), strings.Join(tags, ";")}
		if err := cw.Write(rec); err != nil {
			return nil, err
		}
	}
	cw.Flush()
	return skipped, cw.Error()
}
