// Package wire owns the agent API's wire format, the one definition both
// sides import: the agent (package agent, in the discovery initramfs) and
// the boot server (provision/httpboot), plus images, which writes the
// initramfs's module index. It holds the report the agent posts (Report:
// Facts or an Event) and its strict parser (ParseReport), the deploy
// Instructions the agent fetches and their validation, the module index
// (ModuleIndex), the deployed OS's one report of its SSH host keys
// (HostKeysReport, ParseHostKeysReport, HostKeysReply) and the paths of the API. It imports only the standard
// library, so the agent binary links neither the boot server nor images.
package wire

// Paths of the agent API on the boot server, authenticated by the boot's
// bearer token.
const (
	// ReportPath takes a POSTed Report.
	ReportPath = "/api/v1/report"
	// DeployPath answers a GET with the machine's Instructions.
	DeployPath = "/api/v1/deploy"
)
