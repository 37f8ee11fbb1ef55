// Package playbooks is ironrack's work on deployed machines. Its
// sub-packages:
//
//   - remote: the SSH client, one connection per machine (Dial, Client.Run),
//     strict host-key checking through a caller-supplied callback, remote
//     commands ended with their process group on timeout or cancel;
//   - fanout: the fan-out engine behind `ironrack run` and playbooks: at
//     most F hosts in flight, batches (N, P%, lists as Ansible's serial),
//     per-batch failure thresholds that abort (unreachable hosts count), a
//     Result per host, and the dshbak-style folding of identical output;
//   - book: playbook files (parsed with FILE:LINE refusals, planned for
//     every machine before any is touched), their step kinds and --check;
//   - builtin: the built-in playbooks, embedded YAML (deploy);
//   - netpolicy: the firewall: the policy file, per-machine nftables
//     rulesets with tier membership in named sets, plan/apply (rollback
//     armed on the host)/confirm/status, and the membership watcher;
//   - mesh: the WireGuard admin mesh (public keys in Consul, keys made on
//     each machine, configs from the admin and machine groups, revoke);
//   - hostkeys: the strict SSH host-key trust every connection to a machine
//     uses (never trust on first use): recorded keys and ironrack's SSH CA,
//     certificate signing and installing, known_hosts import.
package playbooks
