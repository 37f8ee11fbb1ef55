package images

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// This file finds the Debian mirror the machine's own apt uses.

// AptMirror returns the first Debian archive URL among the machine's apt
// sources under root ("/" in production): deb822 *.sources files in
// etc/apt/sources.list.d (URIs:) and one-line etc/apt/sources.list and
// *.list entries (deb URL suite ...). Security and update archives
// (URLs ending in -security, suites ending in -security or -updates) are
// skipped: debootstrap wants the main archive.
func AptMirror(root string) (string, error) {
	var files []string
	files = append(files, filepath.Join(root, "etc/apt/sources.list"))
	more, _ := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d/*"))
	sort.Strings(more)
	files = append(files, more...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var u string
		switch {
		case strings.HasSuffix(f, ".sources"):
			u = mirrorDeb822(string(b))
		case strings.HasSuffix(f, ".list") || strings.HasSuffix(f, "sources.list"):
			u = mirrorOneLine(string(b))
		}
		if u != "" {
			return u, nil
		}
	}
	return "", fmt.Errorf("no Debian archive in %s or %s (give --mirror)", files[0], filepath.Join(root, "etc/apt/sources.list.d"))
}

func mirrorDeb822(s string) string {
	for _, stanza := range regexp.MustCompile(`\n\s*\n`).Split(s, -1) {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok && !strings.HasPrefix(k, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if e := fields["enabled"]; e == "no" || !strings.Contains(" "+fields["types"]+" ", " deb ") {
			continue
		}
		suites := strings.Fields(fields["suites"])
		for _, u := range strings.Fields(fields["uris"]) {
			if mainArchive(u, suites) {
				return strings.TrimSuffix(u, "/")
			}
		}
	}
	return ""
}

func mirrorOneLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options: [arch=amd64 signed-by=...]
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && mainArchive(f[0], f[1:2]) {
			return strings.TrimSuffix(f[0], "/")
		}
	}
	return ""
}

func mainArchive(u string, suites []string) bool {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "file:/") {
		return false
	}
	if strings.HasSuffix(strings.TrimSuffix(u, "/"), "-security") {
		return false
	}
	for _, s := range suites {
		if !strings.HasSuffix(s, "-security") && !strings.HasSuffix(s, "-updates") && !strings.HasSuffix(s, "-backports") {
			return true
		}
	}
	return false
}
