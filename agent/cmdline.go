package agent

import "strings"

// Cmdline is what the boot server passes the agent on the kernel command
// line (provision/ipxe.Render): ironrack.mode, .url, .machine, .token, .mac
// and, for a wipe, .erase.
type Cmdline struct {
	Mode, URL, Machine, Token, MAC, Erase string
}

// ParseCmdline reads /proc/cmdline's text. Unknown words are ignored; a
// word given twice keeps its last value, as the kernel does.
func ParseCmdline(s string) Cmdline {
	var c Cmdline
	for _, w := range strings.Fields(s) {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			continue
		}
		switch k {
		case "ironrack.mode":
			c.Mode = v
		case "ironrack.url":
			c.URL = v
		case "ironrack.machine":
			c.Machine = v
		case "ironrack.token":
			c.Token = v
		case "ironrack.erase":
			c.Erase = v
		case "ironrack.mac":
			c.MAC = strings.ToLower(v)
		}
	}
	return c
}
