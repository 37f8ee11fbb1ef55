package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// bashCompletion asks the program itself for the candidates (urfave/cli's
// --generate-bash-completion) and needs nothing from the bash-completion
// package.
const bashCompletion = `# ironrack shell completion for bash: source <(ironrack completion bash)
_ironrack_complete() {
  local cur=${COMP_WORDS[COMP_CWORD]} opts
  local words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  if [[ $cur == -* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o bashdefault -o default -F _ironrack_complete ironrack
`

const zshCompletion = `#compdef ironrack
# ironrack shell completion for zsh: source <(ironrack completion zsh)
_ironrack_complete() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _ironrack_complete ironrack
`

// completionCommand is `ironrack completion bash|zsh|fish`.
func completionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Description: "bash: source <(ironrack completion bash), or save it as /etc/bash_completion.d/ironrack\n" +
			"zsh:  source <(ironrack completion zsh)\n" +
			"fish: ironrack completion fish > ~/.config/fish/completions/ironrack.fish",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("completion: name one shell: bash, zsh or fish")
			}
			switch sh := c.Args().First(); sh {
			case "bash":
				_, err := fmt.Fprint(e.stdout, bashCompletion)
				return err
			case "zsh":
				_, err := fmt.Fprint(e.stdout, zshCompletion)
				return err
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("completion fish: %w", err)
				}
				_, err = fmt.Fprint(e.stdout, s)
				return err
			default:
				return fmt.Errorf("completion: unknown shell %q: want bash, zsh or fish", sh)
			}
		},
	}
}

// versionCommand is `ironrack version`: the module version and VCS
// revision the binary was built from, and the Go toolchain.
func versionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print ironrack's version, the commit it was built from and the Go toolchain",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("version: unexpected argument %q", c.Args().First())
			}
			_, err := fmt.Fprintln(e.stdout, versionString())
			return err
		},
	}
}

// versionString is "ironrack VERSION [(commit REV[, modified])] GO OS/ARCH"
// from the binary's build info.
func versionString() string {
	v, rev, dirty := "(devel)", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ironrack %s", v)
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, " (commit %s", rev)
		if dirty {
			b.WriteString(", modified")
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, " %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.String()
}
