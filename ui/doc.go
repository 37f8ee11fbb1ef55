// Package ui is ironrack's web dashboard (`ironrack ui`): rack elevations
// (front and rear, slots to scale), the machines table filtered with the
// where-language, a machine's page with its history, tiers and headroom
// against the capacity model, the boot server's leases and recent boots.
//
// It owns the pages (server-rendered HTML and SVG, plus one small script of
// its own, embedded), a cache of every machine fed by Consul blocking
// queries (inventory.Store.WatchMachines) that answers filters and feeds
// Server-Sent Events, and token auth: tokens stored hashed in Consul under
// the inventory prefix (ui/tokens/NAME), sessions in an HttpOnly,
// SameSite=Strict cookie, viewers read, admins act, every form CSRF-checked.
//
// It holds no workflow or safety rule of its own: power and boot actions go
// through provision.Fleet (the CLI's code: on never cycles, a machine that
// is on is turned off or cycled only with AllowReboot, which the page sets
// only from an explicit confirmation), set-state through
// inventory.Store.SetState as an Operator. Every action lands in the
// machine's history with the token's name as who.
package ui
