package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ironrack/ironrack/inventory"
	"github.com/ironrack/ironrack/ipmi"
	"github.com/ironrack/ironrack/provision"
	"github.com/ironrack/ironrack/tiers/capacity"
	"github.com/ironrack/ironrack/tiers/plans"
)

// Handler is the UI's HTTP handler (Serve uses it; tests may too).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/racks", http.StatusSeeOther) })
	mux.HandleFunc("GET /racks", s.viewer(s.racksPage))
	mux.HandleFunc("GET /machines", s.viewer(s.machinesPage))
	mux.HandleFunc("GET /machines/{id}", s.viewer(s.machinePage))
	mux.HandleFunc("GET /machines/{id}/card", s.viewer(s.cardFragment))
	mux.HandleFunc("GET /machines/{id}/history", s.viewer(s.historyFragment))
	mux.HandleFunc("POST /machines/{id}/action", s.admin(s.action))
	mux.HandleFunc("GET /tiers", s.viewer(s.tiersPage))
	mux.HandleFunc("GET /boot", s.viewer(s.bootPage))
	mux.HandleFunc("GET /events", s.viewer(s.events))
	return securityHeaders(mux)
}

// securityHeaders: nothing loads from elsewhere, nothing frames the UI.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

type handler func(w http.ResponseWriter, r *http.Request, ss *session)

// viewer requires a session; a page without one redirects to the login.
func (s *Server) viewer(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := s.sessions.get(r)
		if ss == nil {
			if r.Header.Get("Accept") == "text/event-stream" || strings.HasSuffix(r.URL.Path, "/card") || strings.HasSuffix(r.URL.Path, "/history") {
				http.Error(w, "log in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if err := s.cache.waitReady(r.Context()); err != nil {
			http.Error(w, "inventory not loaded yet", http.StatusServiceUnavailable)
			return
		}
		h(w, r, ss)
	}
}

// admin requires an admin's session, a valid CSRF token, and that the
// session's token still exists in Consul.
func (s *Server) admin(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := s.sessions.get(r)
		if ss == nil {
			http.Error(w, "refused: log in with an admin token first", http.StatusUnauthorized)
			return
		}
		if ss.Role != RoleAdmin {
			http.Error(w, fmt.Sprintf("refused: token %s is a viewer; actions need an admin token", ss.Name), http.StatusForbidden)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if !ss.checkCSRF(r) {
			http.Error(w, "refused: the form's CSRF token is missing or wrong (reload the page)", http.StatusForbidden)
			return
		}
		if tok, err := s.tokens.Lookup(r.Context(), ss.Name); err != nil || tok.Role != RoleAdmin {
			s.sessions.drop(r)
			http.Error(w, "refused: token "+ss.Name+" no longer exists or is no longer an admin", http.StatusUnauthorized)
			return
		}
		h(w, r, ss)
	}
}

type pageData struct {
	Title   string
	Nav     string
	Session *session
	Admin   bool
	CSRF    string
	Body    any
}

func (s *Server) page(ss *session, nav, title string, body any) pageData {
	p := pageData{Title: title, Nav: nav, Session: ss, Body: body}
	if ss != nil {
		p.Admin, p.CSRF = ss.Role == RoleAdmin, ss.CSRF
	}
	return p
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "login", s.page(nil, "", "Log in", map[string]string{"Next": safeNext(r.URL.Query().Get("next"))}))
}

// safeNext keeps a post-login redirect on this site.
func safeNext(n string) string {
	if !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.Contains(n, "\\") {
		return "/racks"
	}
	return n
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	tok, err := s.tokens.Verify(r.Context(), r.PostFormValue("token"))
	if err != nil {
		if !errors.Is(err, ErrBadToken) {
			s.log.Warn("ui: login", "err", err)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		s.render(w, http.StatusUnauthorized, "login", s.page(nil, "", "Log in", map[string]string{
			"Next": safeNext(r.PostFormValue("next")), "Error": "That token is not valid."}))
		return
	}
	id, _ := s.sessions.create(tok.Name, tok.Role)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.cfg.TLSCert != "", MaxAge: int(s.cfg.SessionTTL.Seconds())})
	s.log.Info("ui: login", "token", tok.Name, "role", tok.Role)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if ss := s.sessions.get(r); ss != nil && ss.checkCSRF(r) {
		s.sessions.drop(r)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// ---- racks

// rackView is one rack's elevation: its SVG (front and rear side by side,
// one rack unit UnitPx high) and the machines it cannot draw.
type rackView struct {
	Name     string
	Units    int
	Count    int
	SVG      template.HTML
	Unplaced []*inventory.Machine
	machines []*inventory.Machine
}

func (s *Server) racksPage(w http.ResponseWriter, r *http.Request, ss *session) {
	byTier := r.URL.Query().Get("color") == "tier"
	only := r.URL.Query().Get("rack")
	heights := map[string]int{}
	if rs, err := s.cfg.Store.Racks(r.Context()); err != nil {
		s.log.Warn("ui: racks", "err", err)
	} else {
		for _, rk := range rs {
			heights[rk.Name] = rk.Units()
		}
	}
	var racks []*rackView
	idx := map[string]*rackView{}
	var unracked int
	for _, m := range s.cache.machines() {
		if m.Rack == "" {
			unracked++
			continue
		}
		if only != "" && m.Rack != only {
			continue
		}
		rv := idx[m.Rack]
		if rv == nil {
			u := heights[m.Rack]
			if u == 0 {
				u = inventory.DefaultRackHeight
			}
			rv = &rackView{Name: m.Rack, Units: u}
			idx[m.Rack] = rv
			racks = append(racks, rv)
		}
		rv.Count++
		rv.machines = append(rv.machines, m)
	}
	sort.Slice(racks, func(i, j int) bool { return racks[i].Name < racks[j].Name })
	geo := overview
	if only != "" {
		geo = single
	}
	for _, rv := range racks {
		rv.SVG, rv.Unplaced = elevation(rv.Name, rv.Units, rv.machines, geo, byTier)
	}
	color := "state"
	if byTier {
		color = "tier"
	}
	view := "overview"
	if only != "" {
		view = "single"
	}
	s.render(w, http.StatusOK, "racks", s.page(ss, "racks", "Racks", map[string]any{
		"Racks": racks, "Only": only, "Color": color, "View": view, "Unracked": unracked, "States": inventory.States()}))
}

// geometry is how an elevation is drawn: px per rack unit, the width of
// a face (the stylesheet sets the slots' width to match: .overview and
// .single), and whether slots carry the serial as a label.
type geometry struct {
	unitPx, faceW, labelEvery int
	labels                    bool
}

var (
	overview = geometry{unitPx: 8, faceW: 60, labelEvery: 5}
	single   = geometry{unitPx: 18, faceW: 200, labelEvery: 1, labels: true}
)

// elevation draws one rack as SVG: the front face left, the rear right,
// unit 1 at the bottom, each machine from its slot up Units() units, on
// the faces it fills. The markup is written directly (not through a
// template): it is most of the racks page, and 2,000 machines must render
// fast. Every value in it is escaped.
func elevation(name string, units int, ms []*inventory.Machine, g geometry, byTier bool) (template.HTML, []*inventory.Machine) {
	h := units * g.unitPx
	left, rearX := 24, 24+g.faceW+16
	width := rearX + g.faceW + 4
	var b strings.Builder
	b.Grow(256 + len(ms)*180)
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="rack %s">`,
		width, h+16, width, h+16, html.EscapeString(name))
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="face">front</text><text x="%d" y="%d" class="face">rear</text>`, left, h+13, rearX, h+13)
	fmt.Fprintf(&b, `<rect x="%d" y="0" width="%d" height="%d" class="frame"/><rect x="%d" y="0" width="%d" height="%d" class="frame"/>`,
		left, g.faceW, h, rearX, g.faceW, h)
	for u := 1; u <= units; u++ {
		if u == 1 || u%g.labelEvery == 0 {
			fmt.Fprintf(&b, `<text x="20" y="%d" class="u">%d</text>`, (units-u)*g.unitPx+g.unitPx-2, u)
		}
	}
	var unplaced []*inventory.Machine
	type placed struct {
		m    *inventory.Machine
		y, h int
	}
	var ps []placed
	for _, m := range ms {
		slot, err := strconv.Atoi(m.Slot)
		if err != nil || slot < 1 || slot+m.Units()-1 > units {
			unplaced = append(unplaced, m)
			continue
		}
		top := slot + m.Units() - 1
		ps = append(ps, placed{m, (units-top)*g.unitPx + 1, m.Units()*g.unitPx - 2})
	}
	for _, face := range []string{"front", "rear"} {
		x := left + 1
		if face == "rear" {
			x = rearX + 1
		}
		fmt.Fprintf(&b, `<g data-face="%s" transform="translate(%d 0)">`, face, x)
		for _, p := range ps {
			if !p.m.OnFace(face == "rear") {
				continue
			}
			id := html.EscapeString(p.m.ID)
			if byTier {
				fmt.Fprintf(&b, `<rect y="%d" height="%d" class="slot" fill="%s" data-id="%s" data-slot="%s"/>`,
					p.y, p.h, tierColor(p.m.Tier), id, html.EscapeString(p.m.Slot))
			} else {
				fmt.Fprintf(&b, `<rect y="%d" height="%d" class="slot st-%s" data-id="%s" data-slot="%s"/>`,
					p.y, p.h, html.EscapeString(string(p.m.State)), id, html.EscapeString(p.m.Slot))
			}
			if g.labels {
				fmt.Fprintf(&b, `<text x="4" y="%d" class="lbl">%s</text>`, p.y+p.h-4, html.EscapeString(p.m.Serial))
			}
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()), unplaced
}

// ---- machines

func (s *Server) machinesPage(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	src := q.Get("where")
	page, _ := strconv.Atoi(q.Get("page"))
	if page < 1 {
		page = 1
	}
	data := map[string]any{"Where": src, "Page": page}
	wh, err := inventory.ParseWhere(src)
	status := http.StatusOK
	if err == nil {
		start := time.Now()
		var ms []*inventory.Machine
		ms, err = s.cache.filter(wh)
		data["Took"] = time.Since(start).Round(time.Microsecond).String()
		if err == nil {
			n := s.cfg.PageSize
			pages := max(1, (len(ms)+n-1)/n)
			page = min(page, pages)
			lo, hi := (page-1)*n, min(page*n, len(ms))
			data["Machines"], data["Total"], data["Pages"], data["Page"] = ms[lo:hi], len(ms), pages, page
			if page > 1 {
				data["Prev"] = pageURL(src, page-1)
			}
			if page < pages {
				data["Next"] = pageURL(src, page+1)
			}
		}
	}
	if err != nil {
		data["Error"] = err.Error()
		status = http.StatusBadRequest
	}
	s.render(w, status, "machines", s.page(ss, "machines", "Machines", data))
}

func pageURL(where string, page int) string {
	v := url.Values{}
	if where != "" {
		v.Set("where", where)
	}
	v.Set("page", strconv.Itoa(page))
	return "/machines?" + v.Encode()
}

// machineData is a machine with its recent history.
func (s *Server) machineData(ctx context.Context, id string, last int) (*inventory.Machine, []inventory.HistoryEntry, error) {
	m := s.cache.get(id)
	if m == nil {
		return nil, nil, inventory.ErrNotFound
	}
	h, err := s.cfg.Store.History(ctx, id)
	if err != nil {
		return m, nil, err
	}
	if last > 0 && len(h) > last {
		h = h[len(h)-last:]
	}
	for i, j := 0, len(h)-1; i < j; i, j = i+1, j-1 {
		h[i], h[j] = h[j], h[i]
	}
	return m, h, nil
}

func (s *Server) machinePage(w http.ResponseWriter, r *http.Request, ss *session) {
	m, h, err := s.machineData(r.Context(), r.PathValue("id"), 200)
	if m == nil {
		http.Error(w, "no machine "+r.PathValue("id"), http.StatusNotFound)
		return
	}
	data := map[string]any{"M": m, "History": h, "States": inventory.Transitions(m.State, inventory.Operator)}
	if err != nil {
		data["Error"] = err.Error()
	}
	s.render(w, http.StatusOK, "machine", s.page(ss, "machines", m.ID, data))
}

func (s *Server) cardFragment(w http.ResponseWriter, r *http.Request, ss *session) {
	m, h, err := s.machineData(r.Context(), r.PathValue("id"), 5)
	if m == nil {
		http.Error(w, "no machine "+r.PathValue("id"), http.StatusNotFound)
		return
	}
	data := map[string]any{"M": m, "History": h}
	if err != nil {
		data["Error"] = err.Error()
	}
	s.render(w, http.StatusOK, "card", data)
}

func (s *Server) historyFragment(w http.ResponseWriter, r *http.Request, ss *session) {
	m, h, err := s.machineData(r.Context(), r.PathValue("id"), 200)
	if m == nil {
		http.Error(w, "no machine "+r.PathValue("id"), http.StatusNotFound)
		return
	}
	data := map[string]any{"M": m, "History": h}
	if err != nil {
		data["Error"] = err.Error()
	}
	s.render(w, http.StatusOK, "history", data)
}

// ---- actions

type actionResult struct {
	Machine, Action, Outcome string
	OK                       bool
}

// action runs one action on one machine named by its ID: power on, off
// or cycle and boot pxe through provision.Fleet (the CLI's workflows and
// safety rules), set-state through the lifecycle table as an operator.
// AllowReboot is set only from the form's explicit confirmation.
func (s *Server) action(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	act, reason := r.PostFormValue("action"), strings.TrimSpace(r.PostFormValue("reason"))
	confirm := r.PostFormValue("confirm") == "yes"
	if len(reason) > 512 {
		http.Error(w, "reason: longer than 512 characters", http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	res := actionResult{Machine: id, Action: act}
	fleet := s.cfg.Fleet(ss.Name)
	power := func(a ipmi.PowerAction) []provision.Outcome {
		sel, err := provision.Select(ctx, s.cfg.Store, []string{id}, inventory.Query{})
		if err != nil {
			return []provision.Outcome{{Machine: id, Err: err, Reason: provision.Reason(err)}}
		}
		return fleet.Power(ctx, sel, a, provision.PowerRequest{AllowReboot: confirm, Reason: reason})
	}
	var outs []provision.Outcome
	switch act {
	case "power-on":
		outs = power(ipmi.On)
	case "power-off":
		outs = power(ipmi.Off)
	case "power-cycle":
		outs = power(ipmi.Cycle)
	case "boot-pxe":
		sel, err := provision.Select(ctx, s.cfg.Store, []string{id}, inventory.Query{})
		if err != nil {
			outs = []provision.Outcome{{Machine: id, Err: err, Reason: provision.Reason(err)}}
		} else {
			outs = fleet.SetBoot(ctx, sel, provision.BootRequest{Device: ipmi.BootPXE, Reason: reason})
		}
	case "set-state":
		to, err := inventory.ParseState(r.PostFormValue("state"))
		if err == nil {
			_, err = s.cfg.Store.SetState(ctx, id, to, inventory.Operator, inventory.Change{What: "set-state", Why: reason, Who: ss.Name})
		}
		res.OK, res.Outcome = err == nil, "state "+r.PostFormValue("state")
		if err != nil {
			res.Outcome = err.Error()
		}
	default:
		http.Error(w, fmt.Sprintf("unknown action %q (want power-on, power-off, power-cycle, boot-pxe or set-state)", act), http.StatusBadRequest)
		return
	}
	for _, o := range outs {
		res.OK = o.OK()
		res.Outcome = strings.TrimSpace(fmt.Sprintf("%s %s → %s %s", o.Reason, o.Before, o.After, o.Note))
		if o.Err != nil {
			res.Outcome = o.Reason + ": " + o.Err.Error()
		}
	}
	s.log.Info("ui: action", "token", ss.Name, "machine", id, "action", act, "ok", res.OK, "outcome", res.Outcome)
	status := http.StatusOK
	if !res.OK {
		status = http.StatusConflict
	}
	s.render(w, status, "result", s.page(ss, "machines", "Action", res))
}

// ---- tiers

type tierView struct {
	Name    string
	Chart   template.HTML
	Size    int
	States  map[inventory.State]int
	Color   string
	Classes []classHeadroom
}

type classHeadroom struct {
	Class    string
	PerNode  float64
	Ready    int
	Headroom float64
	Unit     string
}

var tierUnits = map[string]string{capacity.Ingestion: "events/s", capacity.Storage: "bytes", capacity.Query: "queries/s"}

func (s *Server) tiersPage(w http.ResponseWriter, r *http.Request, ss *session) {
	tiers := map[string]*tierView{}
	var ready []*inventory.Machine
	for _, m := range s.cache.machines() {
		if m.State == inventory.StateReady {
			ready = append(ready, m)
		}
		if m.Tier == "" {
			continue
		}
		tv := tiers[m.Tier]
		if tv == nil {
			tv = &tierView{Name: m.Tier, States: map[inventory.State]int{}, Color: tierColor(m.Tier)}
			tiers[m.Tier] = tv
		}
		tv.Size++
		tv.States[m.State]++
	}
	for _, t := range capacity.Tiers {
		if tiers[t] == nil {
			tiers[t] = &tierView{Name: t, States: map[inventory.State]int{}, Color: tierColor(t)}
		}
	}
	model, err := capacity.DefaultModel()
	if err == nil {
		for _, tv := range tiers {
			for _, c := range model.Classes {
				per := c.PerNode(tv.Name)
				if per == 0 {
					continue
				}
				n := 0
				for _, m := range ready {
					if ok, _ := c.Selector().Match(m); ok {
						n++
					}
				}
				tv.Classes = append(tv.Classes, classHeadroom{Class: c.Name, PerNode: per, Ready: n,
					Headroom: per * float64(n), Unit: tierUnits[tv.Name]})
			}
		}
	}
	series, read := s.tierLog.series()
	for name, pts := range series {
		if tiers[name] == nil && len(pts) > 0 {
			tiers[name] = &tierView{Name: name, States: map[inventory.State]int{}, Color: tierColor(name)}
		}
	}
	var list []*tierView
	for _, tv := range tiers {
		tv.Chart = sizeChart(tv.Name, series[tv.Name], time.Now())
		list = append(list, tv)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	data := map[string]any{"Tiers": list, "Ready": len(ready), "HistoriesRead": read, "Machines": len(s.cache.machines())}
	if err != nil {
		data["Error"] = err.Error()
	}
	rec, err := s.plans.Latest(r.Context())
	if err != nil {
		data["Error"] = err.Error()
	}
	if rec != nil {
		data["Plan"], data["PlanChart"] = rec, planChart(rec)
	}
	s.render(w, http.StatusOK, "tiers", s.page(ss, "tiers", "Tiers", data))
}

// sizeChart draws a tier's size over time as a step line, from its first
// member to now, with the peak and the current size written out.
func sizeChart(tier string, pts []tierPoint, now time.Time) template.HTML {
	if len(pts) == 0 {
		return ""
	}
	const w, h, pad = 480, 70, 4
	start := pts[0].At
	span := now.Sub(start)
	if span <= 0 {
		span = time.Second
	}
	peak := 1
	for _, p := range pts {
		peak = max(peak, p.Size)
	}
	x := func(t time.Time) int { return pad + int(float64(w-2*pad)*float64(t.Sub(start))/float64(span)) }
	y := func(n int) int { return h - pad - (h-2*pad)*n/peak }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="size" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="size of %s over time" data-tier="%s" data-points="%d" data-last="%d" data-peak="%d">`,
		w+120, h+14, w+120, h+14, html.EscapeString(tier), html.EscapeString(tier), len(pts), pts[len(pts)-1].Size, peak)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" class="bg"/><path class="line" fill="none" stroke="%s" d="M%d %d`, w, h, tierColor(tier), x(start), y(0))
	prev := 0
	for _, p := range pts {
		fmt.Fprintf(&b, ` H%d V%d`, x(p.At), y(p.Size))
		prev = p.Size
	}
	fmt.Fprintf(&b, ` H%d"/>`, x(now))
	if prev == peak {
		fmt.Fprintf(&b, `<text x="%d" y="12" class="n">now %d, the peak</text>`, w+6, prev)
	} else {
		fmt.Fprintf(&b, `<text x="%d" y="12" class="n">peak %d</text><text x="%d" y="%d" class="n">now %d</text>`, w+6, peak, w+6, max(y(prev)+4, 26), prev)
	}
	fmt.Fprintf(&b, `<text x="0" y="%d" class="n">%s</text><text x="%d" y="%d" class="n" text-anchor="end">now</text></svg>`,
		h+12, start.UTC().Format("2006-01-02 15:04"), w, h+12)
	return template.HTML(b.String())
}

// planChart draws the plan's step as SVG: per tier a bar for its size
// before and one after, to one scale, with the numbers.
func planChart(rec *plans.Record) template.HTML {
	most := 1
	for _, tp := range rec.Plan.Tiers {
		most = max(most, tp.Current, tp.Target)
	}
	const rowH, barH, labelW, barW = 46, 16, 90, 420
	var b strings.Builder
	h := len(rec.Plan.Tiers)*rowH + 20
	fmt.Fprintf(&b, `<svg class="plan" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="plan before and after">`,
		labelW+barW+80, h, labelW+barW+80, h)
	for i, tp := range rec.Plan.Tiers {
		y := 10 + i*rowH
		fmt.Fprintf(&b, `<text x="0" y="%d" class="tl">%s</text>`, y+barH+4, html.EscapeString(tp.Tier))
		for j, n := range []int{tp.Current, tp.Target} {
			cls, what := "before", "before"
			if j == 1 {
				cls, what = "after", "after"
			}
			w := n * barW / most
			by := y + j*(barH+2)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" class="%s" data-tier="%s" data-%s="%d"/>`,
				labelW, by, max(w, 1), barH, cls, html.EscapeString(tp.Tier), what, n)
			fmt.Fprintf(&b, `<text x="%d" y="%d" class="n">%s %d</text>`, labelW+max(w, 1)+4, by+barH-3, what, n)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// ---- boot server

type bootView struct {
	Machine *inventory.Machine
	Entry   inventory.HistoryEntry
}

func (s *Server) bootPage(w http.ResponseWriter, r *http.Request, ss *session) {
	data := map[string]any{}
	leases, err := s.cfg.Store.Leases(r.Context())
	if err != nil {
		data["Error"] = err.Error()
	}
	sort.Slice(leases, func(i, j int) bool { return leases[i].Expires.After(leases[j].Expires) })
	data["Leases"] = leases
	data["Now"] = time.Now()
	ms := append([]*inventory.Machine(nil), s.cache.machines()...)
	sort.Slice(ms, func(i, j int) bool { return ms[i].UpdatedAt.After(ms[j].UpdatedAt) })
	var boots []bootView
	for _, m := range ms[:min(20, len(ms))] {
		h, err := s.cfg.Store.History(r.Context(), m.ID)
		if err != nil {
			continue
		}
		for i := len(h) - 1; i >= 0 && i >= len(h)-10; i-- {
			if h[i].Who == "boot-server" {
				boots = append(boots, bootView{Machine: m, Entry: h[i]})
			}
		}
	}
	sort.Slice(boots, func(i, j int) bool { return boots[i].Entry.At.After(boots[j].Entry.At) })
	data["Boots"] = boots
	s.render(w, http.StatusOK, "boot", s.page(ss, "boot", "Boot server", data))
}

// ---- live events

// liveMachine is what the page's script needs to redraw a machine.
type liveMachine struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Tier  string `json:"tier"`
	Fill  string `json:"fill"`
	Title string `json:"title"`
}

// events streams the machines that change, as Server-Sent Events.
func (s *Server) events(w http.ResponseWriter, r *http.Request, ss *session) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	sub, cancel := s.cache.subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 1000\n: hello\n\n")
	fl.Flush()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keep.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case <-sub.wake:
			ms := sub.take()
			if len(ms) == 0 {
				continue
			}
			out := make([]liveMachine, len(ms))
			for i, m := range ms {
				out[i] = liveMachine{ID: m.ID, State: string(m.State), Tier: m.Tier, Fill: tierColor(m.Tier),
					Title: fmt.Sprintf("%s %s/%s %s %s", m.Serial, m.Rack, m.Slot, m.State, m.Tier)}
			}
			b, _ := json.Marshal(out)
			fmt.Fprintf(w, "event: machines\ndata: %s\n\n", b)
		}
		fl.Flush()
	}
}
