package ui

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// templates are the pages, each parsed with the shared layout.
type templates struct {
	pages map[string]*template.Template
}

var pageNames = []string{"login", "racks", "machines", "machine", "tiers", "boot", "result", "card", "history"}

// fragments are rendered without the layout.
var fragments = map[string]bool{"card": true, "history": true}

func parseTemplates() (*templates, error) {
	funcs := template.FuncMap{
		"tierColor": tierColor,
		"ago":       ago,
		"when":      func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
		"add":       func(a, b int) int { return a + b },
		"join":      strings.Join,
		"gib":       func(b int64) string { return fmt.Sprintf("%.0f GB", float64(b)/1e9) },
	}
	t := &templates{pages: map[string]*template.Template{}}
	for _, p := range pageNames {
		files := []string{"assets/layout.html", "assets/" + p + ".html"}
		if fragments[p] {
			files = files[1:]
		}
		if p == "machine" {
			files = append(files, "assets/history.html")
		}
		tp, err := template.New(p).Funcs(funcs).ParseFS(assets, files...)
		if err != nil {
			return nil, fmt.Errorf("ui: templates: %w", err)
		}
		t.pages[p] = tp
	}
	return t, nil
}

// render writes page with data; a template error is a 500 and a log line.
func (s *Server) render(w http.ResponseWriter, status int, page string, data any) {
	var b bytes.Buffer
	name := "layout"
	if fragments[page] {
		name = page
	}
	if err := s.tmpl.pages[page].ExecuteTemplate(&b, name, data); err != nil {
		s.log.Error("ui: render", "page", page, "err", err)
		http.Error(w, "internal error rendering "+page, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// tierColor is a stable color per tier name ("" is grey).
func tierColor(tier string) string {
	if tier == "" {
		return "#9aa0a6"
	}
	h := fnv.New32a()
	h.Write([]byte(tier))
	return fmt.Sprintf("hsl(%d,60%%,55%%)", h.Sum32()%360)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
