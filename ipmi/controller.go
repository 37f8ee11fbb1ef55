package ipmi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/go-logr/logr"
	"github.com/hashicorp/go-multierror"
	"github.com/jacobweinstock/registrar"
)

// Controller talks to BMCs. It takes the credentials of each BMC as a value
// per call and keeps no state but the provider that last worked for each
// BMC, so a dead protocol is not probed again on every call. The zero value
// is ready to use; use it through a pointer; it is safe for concurrent use.
type Controller struct {
	// Logger receives debug logs (never passwords); bmclib's logs are
	// bridged to it. If nil, logs are discarded.
	Logger *slog.Logger
	// Providers are tried in this order. If nil, DefaultProviders().
	Providers []Provider
	// Timeout bounds each call (login, command, read-back) unless ctx ends
	// sooner. If 0, 10s.
	Timeout time.Duration
	// ExchangeTimeout bounds one IPMI round trip before the request is
	// resent. If 0, 1s.
	ExchangeTimeout time.Duration
	// PollInterval is the pause between read-backs after a write. If 0,
	// 200ms.
	PollInterval time.Duration
	// BootSettle is how long after a Redfish boot override reads back as
	// set it is read once more, to catch a BMC that silently reverts it
	// (ErrReverted). If 0, 1s.
	BootSettle time.Duration
	// Clock paces polls. If nil, the real clock.
	Clock Clock

	mu      sync.Mutex
	working map[string]string // bmcKey -> provider name
}

func (c *Controller) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 10 * time.Second
}

func (c *Controller) exchangeTimeout() time.Duration {
	if c.ExchangeTimeout > 0 {
		return c.ExchangeTimeout
	}
	return time.Second
}

func (c *Controller) pollInterval() time.Duration {
	if c.PollInterval > 0 {
		return c.PollInterval
	}
	return 200 * time.Millisecond
}

func (c *Controller) bootSettle() time.Duration {
	if c.BootSettle > 0 {
		return c.BootSettle
	}
	return time.Second
}

func (c *Controller) clock() Clock {
	if c.Clock != nil {
		return c.Clock
	}
	return realClock{}
}

func (c *Controller) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Controller) providers() []Provider {
	if c.Providers != nil {
		return c.Providers
	}
	return DefaultProviders()
}

// WorkingProvider is the provider that last worked for cred's BMC, or "".
func (c *Controller) WorkingProvider(cred Credentials) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.working[bmcKey(cred)]
}

func bmcKey(cred Credentials) string {
	return cred.Host + "|" + strconv.Itoa(cred.Port) + "|" + string(cred.Protocol)
}

func (c *Controller) remember(cred Credentials, provider string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.working == nil {
		c.working = map[string]string{}
	}
	c.working[bmcKey(cred)] = provider
}

func (c *Controller) forget(cred Credentials, provider string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.working[bmcKey(cred)] == provider {
		delete(c.working, bmcKey(cred))
	}
}

// candidates are the providers for cred's protocol, the one that worked
// last first.
func (c *Controller) candidates(cred Credentials) []Provider {
	last := c.WorkingProvider(cred)
	var first, rest []Provider
	for _, p := range c.providers() {
		if cred.Protocol != ProtocolAuto && p.Protocol != cred.Protocol {
			continue
		}
		if p.Name == last {
			first = append(first, p)
		} else {
			rest = append(rest, p)
		}
	}
	return append(first, rest...)
}

// session is one provider's driver, opened through a bmclib client whose
// registry holds just that driver.
type session struct {
	client   *bmclib.Client
	driver   any
	provider string
	protocol Protocol
}

// with opens a session on the first provider that can do the operation and
// runs fn on it. need, if not nil, says whether a driver can do it at all.
// A provider is abandoned for the next one only when its failure says
// nothing about the BMC's answer: unsupported, or its own transport failed
// (then providers of the same protocol are skipped too). Wrong credentials,
// refusals, read-back mismatches and safety refusals end the call.
func (c *Controller) with(ctx context.Context, cred Credentials, need func(driver any) bool, fn func(ctx context.Context, s *session) error) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	log := logr.FromSlogHandler(c.logger().Handler())
	opts := DriverOptions{Logger: log, ExchangeTimeout: c.exchangeTimeout(), Retries: 3}

	cands := c.candidates(cred)
	if len(cands) == 0 {
		return "", fmt.Errorf("no provider for protocol %q: %w", cred.Protocol, ErrUnsupported)
	}
	var errs []error
	dead := map[Protocol]bool{}
	for _, p := range cands {
		if dead[p.Protocol] {
			continue
		}
		if ctx.Err() != nil {
			if len(errs) == 0 {
				errs = append(errs, classify(ctx.Err()))
			}
			break
		}
		drv, features, err := p.New(cred, opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w: %w", p.Name, ErrUnsupported, err))
			continue
		}
		if need != nil && !need(drv) {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, ErrUnsupported))
			continue
		}
		err = c.run(ctx, cred, p, drv, features, log, fn)
		if err == nil {
			c.remember(cred, p.Name)
			return p.Name, nil
		}
		c.logger().DebugContext(ctx, "provider failed", "bmc", cred, "provider", p.Name, "err", err)
		c.forget(cred, p.Name)
		errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
		if final(err) {
			break
		}
		if transport(err) {
			dead[p.Protocol] = true
		}
	}
	return "", joinErrors(errs)
}

func (c *Controller) run(ctx context.Context, cred Credentials, p Provider, drv any, features registrar.Features,
	log logr.Logger, fn func(ctx context.Context, s *session) error) error {
	reg := registrar.NewRegistry(registrar.WithLogger(log))
	reg.Register(p.Name, string(p.Protocol), features, nil, drv)
	remaining := c.timeout()
	if dl, ok := ctx.Deadline(); ok {
		remaining = time.Until(dl)
	}
	cl := bmclib.NewClient(cred.Host, cred.Username, cred.Password,
		bmclib.WithRegistry(reg), bmclib.WithLogger(log), bmclib.WithPerProviderTimeout(remaining))
	if err := cl.Open(ctx); err != nil {
		return providerError(err)
	}
	err := fn(ctx, &session{client: cl, driver: drv, provider: p.Name, protocol: p.Protocol})
	_ = cl.Close(ctx)
	return classify(err)
}

// final reports whether err is the BMC's answer (or the caller's), so that
// trying another provider would be wrong or pointless.
func final(err error) bool {
	for _, s := range []error{ErrTLS, ErrAuth, ErrRefused, ErrNotApplied, ErrReverted, ErrRebootNotAllowed, errMaybeApplied, context.Canceled} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// providerError digs the provider's own error out of bmclib's multierror
// ("2 errors occurred: provider: goipmi: ...; no Opener implementations
// found"), keeps the chain for errors.Is, and classifies it.
func providerError(err error) error {
	var me *multierror.Error
	if errors.As(err, &me) && len(me.Errors) > 0 {
		err = me.Errors[0]
		// bmclib prefixes "provider: NAME: "; the callers name it already.
		if inner := errors.Unwrap(err); inner != nil && strings.HasPrefix(err.Error(), "provider: ") {
			err = inner
		}
	}
	return classify(err)
}

// joinErrors reports the first (most preferred provider's) error, and the
// others after it.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return fmt.Errorf("no provider could run: %w", ErrUnsupported)
	case 1:
		return errs[0]
	}
	return fmt.Errorf("%w (also tried: %w)", errs[0], errors.Join(errs[1:]...))
}
