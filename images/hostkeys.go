package images

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// A deployed machine's SSH host keys are its own: made on its first boot,
// never in the image, never sent anywhere but their public halves. The
// seed's first-boot step (HostKeysScript, run from bootcmd, once per
// instance) makes them, posts the public keys to the boot server with the
// deploy's single-use token, and installs the host certificates the answer
// carries, all before sshd first starts: cloud-init's init stage, where
// bootcmd runs, is ordered before ssh.service, so sshd is never restarted
// for it (a restart mid-boot refused logins, see images.Debian's sshd
// notes). cloud-init's phone_home module could post the keys too, but only
// in the final stage, after sshd is up, and it ignores the answer, so a
// certificate could only be installed by restarting sshd.

// HostKeysDir is where the deployed OS keeps its host keys.
const HostKeysDir = "/etc/ssh"

// HostCertConf is the sshd drop-in HostKeysScript writes, naming the
// certificates (HostCertificate), relative to the ssh directory.
const HostCertConf = "sshd_config.d/60-ironrack-host-certificate.conf"

// HostKeysScript is the first-boot step, a Python 3 program (the image
// has python3 for cloud-init; it has no curl). Arguments: the report URL,
// the token, the ssh directory. It makes the missing host keys (rsa,
// ecdsa, ed25519, as cloud-init would), posts the public ones as
// wire.HostKeysReport, writes each certificate of the answer next to its
// key (ssh_host_TYPE_key-cert.pub) and HostCertConf. It tries 6 times over
// about half a minute; a refusal (4xx) is final; it never fails the boot:
// without a report the machine's keys are unknown, and SSH to it is
// refused until an operator imports them.
const HostKeysScript = `import glob, json, os, subprocess, sys, time, urllib.error, urllib.request
url, token, d = sys.argv[1:4]
def log(m):
    print("ironrack host keys: " + m, file=sys.stderr, flush=True)
for t in ("rsa", "ecdsa", "ed25519"):
    k = os.path.join(d, "ssh_host_%s_key" % t)
    if not os.path.exists(k):
        subprocess.run(["ssh-keygen", "-q", "-t", t, "-N", "", "-f", k], check=True)
paths = sorted(glob.glob(os.path.join(d, "ssh_host_*_key.pub")))
body = json.dumps({"keys": [open(p).read().strip() for p in paths]}).encode()
certs = None
for attempt in range(6):
    try:
        req = urllib.request.Request(url, data=body, method="POST",
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            certs = json.load(r).get("certificates") or []
        break
    except urllib.error.HTTPError as e:
        log("%s refused the keys: %d %s" % (url, e.code, e.read().decode(errors="replace").strip()))
        if e.code < 500:
            sys.exit(0)
    except Exception as e:
        log("%s: %s" % (url, e))
    time.sleep(2 ** attempt)
if certs is None:
    log("gave up: the keys are not recorded")
    sys.exit(0)
conf = []
for p, c in zip(paths, certs):
    cp = p[:-len(".pub")] + "-cert.pub"
    with open(cp + ".tmp", "w") as f:
        f.write(c.strip() + "\n")
    os.rename(cp + ".tmp", cp)
    conf.append("HostCertificate " + cp + "\n")
if conf:
    c = os.path.join(d, "` + HostCertConf + `")
    os.makedirs(os.path.dirname(c), exist_ok=True)
    with open(c + ".tmp", "w") as f:
        f.write("# ironrack: host certificates signed by ironrack's SSH CA\n" + "".join(conf))
    os.rename(c + ".tmp", c)
log("reported %d keys, installed %d certificates" % (len(paths), len(conf)))
`

var hostKeysTokenRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// validateHostKeys checks the seed's host-key report settings: both or
// neither.
func (s Seed) validateHostKeys() error {
	if s.HostKeysURL == "" && s.HostKeysToken == "" {
		return nil
	}
	u, err := url.Parse(s.HostKeysURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(s.HostKeysURL, " \t\r\n\"'") {
		return fmt.Errorf("nocloud: host keys URL %q: want an http:// or https:// URL", s.HostKeysURL)
	}
	if !hostKeysTokenRE.MatchString(s.HostKeysToken) {
		return fmt.Errorf("nocloud: host-key token: want letters, digits and ._- (up to 128)")
	}
	return nil
}

// hostKeysCloudConfig is the cloud-config that runs HostKeysScript.
// ssh_deletekeys: false keeps cloud-init's ssh module (later in the same
// stage) from replacing the keys just reported; it still makes any type
// the script could not.
func (s Seed) hostKeysCloudConfig() string {
	if s.HostKeysURL == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString("# The host keys are made here, on first boot; their public halves go to the\n")
	b.WriteString("# boot server once, with this deploy's single-use token, and the host\n")
	b.WriteString("# certificates come back, all before sshd first starts.\n")
	b.WriteString("ssh_deletekeys: false\nbootcmd:\n")
	fmt.Fprintf(&b, "  - [cloud-init-per, instance, ironrack-host-keys, python3, -c, %s, %s, %s, %s]\n",
		q(HostKeysScript), q(s.HostKeysURL), q(s.HostKeysToken), q(HostKeysDir))
	return b.String()
}
