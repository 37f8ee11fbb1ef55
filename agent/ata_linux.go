package agent

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// hdparmPath is where the discovery initramfs holds Debian's hdparm
// (images.DiscoveryTools).
const hdparmPath = "/sbin/hdparm"

// hdparm is an ATADrive through the hdparm program: it sends the ATA
// commands by SG_IO ATA PASS-THROUGH (libata, SAT on SAS HBAs) or the
// older HDIO ioctls, and knows their quirks.
type hdparm struct{ dev string }

// run runs hdparm with args and the device, bounded by ctx and, if it has
// no deadline, by limit.
func (h hdparm) run(ctx context.Context, limit time.Duration, args ...string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	args = append(args, h.dev)
	cmd := exec.CommandContext(ctx, hdparmPath, args...)
	cmd.Env = []string{"PATH=/sbin:/bin"}
	// A command in the kernel cannot be interrupted: give up waiting
	// for hdparm a while after the kill.
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("hdparm %s: %w: %s", strings.Join(redact(args), " "), err, lastLines(string(out), 3))
	}
	return string(out), nil
}

// redact leaves the password out of an error (the history records it
// once, in the note before it is set).
func redact(args []string) []string {
	out := append([]string(nil), args...)
	for i := 1; i < len(out); i++ {
		switch out[i-1] {
		case "--security-set-pass", "--security-unlock", "--security-disable", "--security-erase", "--security-erase-enhanced":
			out[i] = "PASSWORD"
		}
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func (h hdparm) Identify(ctx context.Context) ([]uint16, error) {
	out, err := h.run(ctx, 30*time.Second, "--Istdout")
	if err != nil {
		return nil, err
	}
	return ParseIdentify(out)
}

func (h hdparm) SetPassword(ctx context.Context, password string) error {
	_, err := h.run(ctx, time.Minute, "--user-master", "u", "--security-mode", "h", "--security-set-pass", password)
	return err
}

func (h hdparm) Erase(ctx context.Context, password string, enhanced bool) error {
	op := "--security-erase"
	if enhanced {
		op = "--security-erase-enhanced"
	}
	_, err := h.run(ctx, 12*time.Hour, "--user-master", "u", op, password)
	return err
}

func (h hdparm) Disable(ctx context.Context, password string) error {
	_, err := h.run(ctx, time.Minute, "--user-master", "u", "--security-disable", password)
	return err
}
