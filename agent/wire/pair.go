package wire

import "strings"

// DiskKey is what tells one drive from another across boots: the kernel's
// name, which is not stable (SCSI, SATA and NVMe probes run asynchronously
// and can name two disks the other way round on the next boot), and the
// drive's own WWN and serial, which are.
type DiskKey struct{ Name, WWN, Serial string }

// PairDisks returns, for each recorded disk, the index in seen of the
// same drive, or -1 when it is gone. A recorded disk is the seen disk with
// its WWN, else the one with its serial — an identity counts only when
// exactly one recorded and one seen disk carry it — and only then the
// seen disk of its name that no identity took. Each seen disk is paired
// at most once.
func PairDisks(recorded, seen []DiskKey) []int {
	count := func(ds []DiskKey, key func(DiskKey) string) map[string]int {
		c := map[string]int{}
		for _, d := range ds {
			if k := strings.TrimSpace(key(d)); k != "" {
				c[k]++
			}
		}
		return c
	}
	ids := []func(DiskKey) string{
		func(d DiskKey) string { return d.WWN },
		func(d DiskKey) string { return d.Serial },
	}
	out := make([]int, len(recorded))
	used := make([]bool, len(seen))
	for i := range out {
		out[i] = -1
	}
	for _, id := range ids {
		inRec, inSeen := count(recorded, id), count(seen, id)
		for i, r := range recorded {
			k := strings.TrimSpace(id(r))
			if out[i] >= 0 || k == "" || inRec[k] != 1 || inSeen[k] != 1 {
				continue
			}
			for j, s := range seen {
				if !used[j] && strings.TrimSpace(id(s)) == k {
					out[i], used[j] = j, true
				}
			}
		}
	}
	for i, r := range recorded {
		if out[i] >= 0 {
			continue
		}
		for j, s := range seen {
			if !used[j] && s.Name == r.Name {
				out[i], used[j] = j, true
				break
			}
		}
	}
	return out
}
