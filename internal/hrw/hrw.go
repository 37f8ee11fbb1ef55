// Package hrw is rendezvous (highest random weight) hashing, the one score
// that allocation (inventory), a tier's choice of machines to add and remove
// (tiers) and shard placement (tiers/placement) rank by.
package hrw

import "hash/fnv"

// Score is the rendezvous weight of key b for a (an owner, a shard): FNV-1a
// of a, a NUL and b, finished with a splitmix64 step because FNV's low bits
// mix poorly for similar keys. Deterministic, independent of other keys.
func Score(a, b string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(a))
	h.Write([]byte{0})
	h.Write([]byte(b))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}
