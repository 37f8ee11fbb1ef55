// Package book owns playbooks: YAML files of steps run on each machine of a
// selection over SSH, and the step engine.
//
// A playbook is parsed whole before any host is touched (Parse): unknown
// keys, unknown step kinds and bad templates are refused with FILE:LINE.
// Plan then renders every step for one machine (its inventory fields and the
// playbook's vars, --var overriding the defaults), so a missing var or a
// template that fails on some machine is also refused before the first
// command runs. HostPlan.Apply runs the rendered steps through a Runner (the
// one method of *remote.Client it needs) and, for drain, undrain and
// wait-healthy, a Gate (Consul: *Consul). With Options.Check every step
// reports whether it would change anything, and nothing is written.
//
// Step kinds: run, copy (idempotent by sha256, with mode and owner),
// template (Go text/template), service (systemctl restart or reload),
// drain and undrain (Consul maintenance of the machine's services),
// wait-healthy (until the machine's Consul checks pass, with a deadline)
// and only-if (a guard: the host's remaining steps run only if a command
// exits 0). See docs/playbooks.md.
package book
