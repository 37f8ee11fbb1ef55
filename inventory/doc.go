// Package inventory owns ironrack's system of record: the Machine type, the
// lifecycle transition table, and the Store that keeps machines in Consul.
//
// Each machine is an external catalog node named by its ID, whose NodeMeta
// carries what queries filter on (rack, slot, serial, state, tier, cpu_cores,
// mem_gb, vendor, model), plus a KV record with the full JSON. A machine's
// node, record, uniqueness index keys and history entry change together in one
// Consul transaction guarded by CAS on the record's ModifyIndex. Batches larger
// than one transaction (imports, allocations) are written machine by machine
// with a journal, and a batch that dies midway is rolled back by the next
// command that writes.
//
// BMC passwords are sealed with NaCl secretbox under a key file kept outside
// Consul; the Machine carries only a credential reference. The same key
// seals what deployed machines' Consul agents join a secured cluster with
// (AgentSecrets: gossip key, ACL token, the servers' CA).
//
// While the Consul cluster has no leader, reads are retried up to their
// deadline, a write whose answer was lost is read back, and only writes that
// cannot apply twice are resent (retry.go; NewConsulClient builds the client
// with this policy). Backup and Restore copy ironrack's own keys and machine
// nodes, all or nothing (backup.go).
//
// The package knows nothing about BMCs, DHCP or Pulumi.
package inventory
