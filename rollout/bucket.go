package rollout

import (
	"crypto/sha256"
	"encoding/binary"
)

// Bucket places a node in 0..Buckets-1 for a rollout: the first eight
// bytes of SHA-256(planID, 0, node) as a big-endian integer, modulo
// Buckets. Every agent computes the same bucket for the same node, and a
// new rollout ID reshuffles which hosts go first.
func Bucket(planID, node string) int {
	h := sha256.New()
	h.Write([]byte(planID))
	h.Write([]byte{0})
	h.Write([]byte(node))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return int(binary.BigEndian.Uint64(sum[:8]) % Buckets)
}
