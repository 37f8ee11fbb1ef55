package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ironrack/ironrack/tiers/stack"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestConsulUnreachable checks a newcomer's first error: one line saying
// where ironrack looked (and why there), and how to point it elsewhere.
func TestConsulUnreachable(t *testing.T) {
	addr := closedPort(t)
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		from string
	}{
		"flag":             {args: []string{"--consul", addr}, from: "from --consul"},
		"IRONRACK_CONSUL":  {env: map[string]string{"IRONRACK_CONSUL": addr}, from: "from IRONRACK_CONSUL"},
		"CONSUL_HTTP_ADDR": {env: map[string]string{"CONSUL_HTTP_ADDR": addr}, from: "from CONSUL_HTTP_ADDR"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("IRONRACK_CONSUL", "")
			os.Unsetenv("IRONRACK_CONSUL")
			t.Setenv("CONSUL_HTTP_ADDR", "")
			os.Unsetenv("CONSUL_HTTP_ADDR")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			for _, cmd := range [][]string{{"inventory", "list"}, {"power", "status", "--all"}, {"images", "list"}} {
				var out, errb bytes.Buffer
				args := append(append([]string{"ironrack", "--key-file", filepath.Join(t.TempDir(), "key")}, tc.args...), cmd...)
				err := Run(context.Background(), args, strings.NewReader(""), &out, &errb)
				if err == nil {
					t.Fatalf("%v: no error", cmd)
				}
				msg := err.Error()
				want := "cannot reach Consul at " + addr + " (" + tc.from + "): connect: connection refused; point ironrack at your Consul with --consul ADDR, IRONRACK_CONSUL or CONSUL_HTTP_ADDR"
				if msg != want {
					t.Errorf("%v: error %q\nwant %q", cmd, msg, want)
				}
			}
		})
	}
}

// TestVersionAndCompletion: `ironrack version` names the toolchain, and the
// bash completion script, sourced in a real bash with this binary's
// completions, completes a subcommand.
func TestVersionAndCompletion(t *testing.T) {
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"ironrack", "version"}, nil, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "ironrack ") || !strings.Contains(out.String(), " go1.") {
		t.Errorf("version: %q", out.String())
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out.Reset()
		if err := Run(context.Background(), []string{"ironrack", "completion", sh}, nil, &out, &errb); err != nil || !strings.Contains(out.String(), "ironrack") {
			t.Errorf("completion %s: %v\n%s", sh, err, out.String())
		}
	}
	if err := Run(context.Background(), []string{"ironrack", "completion", "tcsh"}, nil, &out, &errb); err == nil || !strings.Contains(err.Error(), `unknown shell "tcsh"`) {
		t.Errorf("completion tcsh: %v", err)
	}

	// The real thing: build the binary, source the script, complete.
	dir := t.TempDir()
	bin := filepath.Join(dir, "ironrack")
	if b, err := exec.Command("go", "build", "-o", bin, "..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	script := filepath.Join(dir, "completion.bash")
	out.Reset()
	Run(context.Background(), []string{"ironrack", "completion", "bash"}, nil, &out, &errb)
	os.WriteFile(script, out.Bytes(), 0o644)
	for line, want := range map[string]string{
		"ironrack inv":                 "inventory",
		"ironrack inventory hi":        "history",
		"ironrack power st":            "status",
		"ironrack inventory list --wh": "--where",
	} {
		words := strings.Fields(line)
		cmd := exec.Command("bash", "-c", `source "$1"; COMP_WORDS=(`+line+`); COMP_CWORD=`+strconv.Itoa(len(words)-1)+`; _ironrack_complete; printf '%s\n' "${COMPREPLY[@]}"`, "bash", script)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		b, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains("\n"+string(b), "\n"+want+"\n") {
			t.Errorf("complete %q: %v, got %q, want %q", line, err, b, want)
		}
	}
}

// TestReadTierConfigOperatorKeys: the stack file's image and userData (a
// block scalar) reach the engine with the sizes; a missing size is named.
func TestReadTierConfigOperatorKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "Pulumi.day.yaml")
	body := "config:\n  ironrack-tiers:image: debian\n  ironrack-tiers:userData: |\n    #cloud-config\n    runcmd:\n      - [true]\n" +
		"  ironrack-tiers:ingestionSize: \"1\"\n  ironrack-tiers:storageSize: \"2\"\n  ironrack-tiers:querySize: \"1\"\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readTierConfig(path, stack.DefaultTiers())
	if err != nil {
		t.Fatal(err)
	}
	if got["ironrack-tiers:image"] != "debian" || got["ironrack-tiers:userData"] != "#cloud-config\nruncmd:\n  - [true]\n" || got["ironrack-tiers:storageSize"] != "2" {
		t.Errorf("config: %q", got)
	}
	os.WriteFile(path, []byte("config:\n  ironrack-tiers:ingestionSize: \"1\"\n"), 0o644)
	if _, err := readTierConfig(path, stack.DefaultTiers()); err == nil || !strings.Contains(err.Error(), "ironrack-tiers:storageSize is not set") {
		t.Errorf("missing size: %v", err)
	}
}
