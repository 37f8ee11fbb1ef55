package ipmi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Sentinels callers branch on. Errors from this package wrap one of them
// (with errors.Is) together with the cause and the target's address, e.g.
// "power on 127.0.10.3: wrong credentials: RAKP2 authentication code mismatch".
var (
	// ErrAuth: the BMC rejected the username or password, or the user lacks
	// the privilege for the operation.
	ErrAuth = errors.New("wrong credentials")
	// ErrUnreachable: nothing answers at the address (connection refused,
	// no route). Retrying soon rarely helps.
	ErrUnreachable = errors.New("unreachable")
	// ErrTimeout: the BMC did not answer before the deadline. It may be
	// busy, frozen or behind a lossy network; a retry may succeed.
	ErrTimeout = errors.New("timed out")
	// ErrUnsupported: no provider can do this on this BMC (e.g. no FRU, no
	// boot device read-back, the command is not implemented).
	ErrUnsupported = errors.New("unsupported")
	// ErrRefused: the BMC answered but refused the request (an IPMI
	// completion code, e.g. a boot device the BMC cannot set).
	ErrRefused = errors.New("refused by BMC")
	// ErrNotApplied: the BMC accepted a write but reading it back shows it
	// did not take effect by the deadline.
	ErrNotApplied = errors.New("not applied")
	// ErrRebootNotAllowed: off, cycle or reset of a machine that is on,
	// without PowerOptions.AllowReboot.
	ErrRebootNotAllowed = errors.New("machine is on and reboot not allowed")
	// ErrReverted: the BMC accepted a boot override and read it back, then
	// silently put the old one back (seen on Redfish BMCs, bmclib#459).
	ErrReverted = errors.New("reverted by BMC")
)

// Reason is a short word for the class of err, for summary tables: "ok",
// "auth", "unreachable", "timeout", "unsupported", "refused", "not-applied",
// "reverted", "tls", "reboot-not-allowed", "canceled" or "error".
func Reason(err error) string {
	err = classify(err)
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrAuth):
		return "auth"
	case errors.Is(err, ErrUnreachable):
		return "unreachable"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrUnsupported):
		return "unsupported"
	case errors.Is(err, ErrRefused):
		return "refused"
	case errors.Is(err, ErrNotApplied):
		return "not-applied"
	case errors.Is(err, ErrReverted):
		return "reverted"
	case errors.Is(err, ErrTLS):
		return "tls"
	case errors.Is(err, ErrRebootNotAllowed):
		return "reboot-not-allowed"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "error"
	}
}

// Retryable reports whether trying err's operation again may succeed and is
// safe: timeouts and unreachable BMCs, unless a non-idempotent write (cycle,
// reset) may already have been sent.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, errMaybeApplied) {
		return false
	}
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnreachable)
}

// errMaybeApplied marks failures after a non-idempotent write may have
// reached the BMC: neither a retry nor another provider may repeat it.
var errMaybeApplied = errors.New("the command may have been applied")

// sentinels are the classes classify assigns.
var sentinels = []error{ErrTLS, ErrAuth, ErrUnreachable, ErrTimeout, ErrUnsupported, ErrRefused, ErrNotApplied, ErrReverted, ErrRebootNotAllowed}

// classify wraps err with the sentinel for its class, if it has none yet.
// It understands go-ipmi's typed errors, network errors, context errors and,
// for providers that only give text (ipmitool, gofish), their messages.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return err
		}
	}
	if s := sentinelFor(err); s != nil {
		return fmt.Errorf("%w: %w", s, err)
	}
	return err
}

func sentinelFor(err error) error {
	if tlsError(err) {
		return ErrTLS
	}
	var rmcp *types.RmcpStatusError
	if errors.As(err, &rmcp) {
		switch rmcp.StatusCode() {
		case types.RmcpStatusCodeUnauthorizedName, types.RmcpStatusCodeInvalidIntegrityCheckValue,
			types.RmcpStatusCodeInvalidRole, types.RmcpStatusCodeUnauthorizedRoleOfPriLevel,
			types.RmcpStatusCodeInvalidNameLength, types.RmcpStatusCodeUnauthorizedGUID:
			return ErrAuth
		case types.RmcpStatusCodeNoCipherSuiteMatch, types.RmcpStatusCodeInvalidAuthAlg,
			types.RmcpStatusCodeInvalidIntegrityAlg, types.RmcpStatusCodeInvalidConfidentAlg:
			return ErrUnsupported
		}
	}
	if errors.Is(err, client.ErrRAKPAuthentication) {
		return ErrAuth
	}
	var resp *types.ResponseError
	if errors.As(err, &resp) {
		switch resp.CompletionCode() {
		case types.CodeInsufficientPrivilege:
			return ErrAuth
		case types.CodeInvalidCommand, types.CodeNotSupported, types.CodeIllegalCommand,
			types.CodeInvalidCommandForLUN, types.CodeParameterNotSupported:
			return ErrUnsupported
		case types.CodeNodeBusy, types.CodeProcessTimeout:
			return ErrTimeout
		default:
			return ErrRefused
		}
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTDOWN) {
		return ErrUnreachable
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return ErrUnreachable
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return ErrTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	return sentinelForText(err.Error())
}

// sentinelForText classifies the text of errors from providers that do not
// keep types (ipmitool's output, gofish).
func sentinelForText(msg string) error {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "x509: "), strings.Contains(m, "tls: failed to verify"),
		strings.Contains(m, strings.ToLower(ErrTLS.Error())):
		return ErrTLS
	// go-ipmi's Connect joins the per-cipher-suite errors with %v, so its
	// typed errors survive only as text.
	case strings.Contains(m, "rakp authentication failed"), strings.Contains(m, "authentication code mismatch"),
		strings.Contains(m, "integrity check value does not match"), strings.Contains(m, "unauthorized role"),
		strings.Contains(m, "invalid integrity check value"), strings.Contains(m, "invalid name length"),
		strings.Contains(m, "hmac is invalid"), strings.Contains(m, "unauthorized name"),
		strings.Contains(m, "401 unauthorized"), strings.Contains(m, "invalid username or password"),
		strings.Contains(m, "insufficient privilege"):
		return ErrAuth
	case strings.Contains(m, "connection refused"), strings.Contains(m, "no route to host"),
		strings.Contains(m, "network is unreachable"):
		return ErrUnreachable
	case strings.Contains(m, "no udp datagram matched"), strings.Contains(m, "no matching ipmi response"),
		strings.Contains(m, "no response from remote controller"), strings.Contains(m, "i/o timeout"),
		strings.Contains(m, "deadline exceeded"), strings.Contains(m, "signal: killed"):
		return ErrTimeout
	case strings.Contains(m, "invalid command"), strings.Contains(m, "not supported"),
		strings.Contains(m, "no cipher suite match"), strings.Contains(m, "invalid authentication algorithm"),
		strings.Contains(m, "invalid integrity algorithm"), strings.Contains(m, "invalid confidentiality algorithm"):
		return ErrUnsupported
	case strings.Contains(m, "set chassis boot parameter") && strings.Contains(m, "failed"):
		return ErrRefused // ipmitool exits 0 but says so
	}
	return nil
}

// lastCause is the innermost message of a go-ipmi error chain formatted as
// "a failed, err: b failed, err: cause", for errors people read.
func lastCause(msg string) string {
	if i := strings.LastIndex(msg, "err: "); i >= 0 {
		return strings.TrimSpace(msg[i+len("err: "):])
	}
	return msg
}

// transport reports whether err says the transport itself failed, so that
// other providers over the same transport need not be tried.
func transport(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, ErrTimeout)
}
