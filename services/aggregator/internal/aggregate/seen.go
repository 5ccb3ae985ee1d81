package aggregate

import (
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
)

// The dedup set of a partition in Valkey (bf:seen:{topic}:{partition}) is a
// sorted set with one member per applied batch that counted sales: the
// batch's next offset (8 bytes, big-endian) followed by one entry per sale
// it counted, the 16-byte SaleKey and the record timestamp (Unix ms, 8
// bytes, big-endian), scored by the newest of those timestamps. Valkey then
// does per batch what it used to do per sale (one ZADD of a 16-byte member
// each), and keeps about 25 bytes per sale in batches of hundreds instead
// of about 118. A batch of one sale, common when traffic is light, is
// written as the key followed by the next offset (24 bytes), scored by its
// timestamp: as compact as the former format. That format, the bare 16-byte
// key scored by its timestamp, is still read, and ages out the same way.
const (
	seenHeaderLen = 8
	seenEntryLen  = len(SaleKey{}) + 8
	// seenOneLen is the length of a member of one sale.
	seenOneLen = len(SaleKey{}) + 8
)

// SeenBlob returns the member that remembers the sales this Delta counts,
// and its score, the newest of their record timestamps; nil when it counts
// none (or dedup is off).
func (d *Delta) SeenBlob() (member []byte, newest int64) {
	if len(d.Seen) == 0 {
		return nil, 0
	}
	if d.seenBlob != nil {
		return d.seenBlob, d.seenNewest
	}
	if len(d.Seen) == 1 {
		for k, ms := range d.Seen {
			d.seenBlob = binary.BigEndian.AppendUint64(k[:], uint64(d.Next))
			d.seenNewest = ms
		}
		return d.seenBlob, d.seenNewest
	}
	// The entries go in offset order, or sorted when Seen was filled by
	// hand, so that the same batch always makes the same member.
	keys := d.seenOrder
	if len(keys) != len(d.Seen) {
		keys = slices.SortedFunc(maps.Keys(d.Seen), func(a, b SaleKey) int { return bytes.Compare(a[:], b[:]) })
	}
	b := make([]byte, seenHeaderLen, seenHeaderLen+seenEntryLen*len(keys))
	binary.BigEndian.PutUint64(b, uint64(d.Next))
	for i, k := range keys {
		ms := d.Seen[k]
		if i == 0 || ms > newest {
			newest = ms
		}
		b = append(b, k[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(ms))
	}
	d.seenBlob, d.seenNewest = b, newest
	return b, newest
}

// SeenSet is a copy of one partition's dedup set, kept by the partition's
// owner so that looking a batch's sales up costs no round trip. It holds
// exactly what Valkey holds after the same applies: built from Valkey's
// members by ParseSeenSet, or kept in step with Add and Forget as batches
// are applied, it gives the same answers.
type SeenSet struct {
	// latest maps each remembered key to the record timestamp of its
	// latest counted copy, by apply order.
	latest map[SaleKey]int64
	// older counts, for the rare key counted more than once (copies
	// further apart than the window), its remembered copies besides the
	// latest.
	older map[SaleKey]int
	blobs seenHeap
}

// seenBlob is one member of the set.
type seenBlob struct {
	// order is the member's place in apply order: the batch's next
	// offset, or -1 for a member in the former one-key format.
	order   int64
	newest  int64
	entries []byte
}

// NewSeenSet returns an empty set.
func NewSeenSet() *SeenSet {
	return &SeenSet{latest: make(map[SaleKey]int64), older: make(map[SaleKey]int)}
}

// ParseSeenSet builds the set from the members of a partition's dedup set
// and their scores, in any order.
func ParseSeenSet(members []string, scores []int64) (*SeenSet, error) {
	if len(members) != len(scores) {
		return nil, fmt.Errorf("%d dedup members with %d scores", len(members), len(scores))
	}
	blobs := make([]seenBlob, 0, len(members))
	for i, m := range members {
		switch {
		case len(m) == len(SaleKey{}):
			// The former format: one key, scored by its timestamp.
			blobs = append(blobs, seenBlob{order: -1, newest: scores[i], entries: binary.BigEndian.AppendUint64([]byte(m), uint64(scores[i]))})
		case len(m) == seenOneLen || len(m) >= seenHeaderLen+seenEntryLen && (len(m)-seenHeaderLen)%seenEntryLen == 0:
			blobs = append(blobs, parseSeenMember([]byte(m), scores[i]))
		default:
			return nil, fmt.Errorf("dedup member %d is %d bytes long, not a sale key or a batch of them", i, len(m))
		}
	}
	slices.SortStableFunc(blobs, func(a, b seenBlob) int { return cmp.Compare(a.order, b.order) })
	s := NewSeenSet()
	for _, b := range blobs {
		s.add(b)
	}
	return s, nil
}

// Seen returns the remembered keys with the record timestamp of their
// latest counted copy, for Dedup.Seen. It is the set's own map: read it
// only until the next Add or Forget.
func (s *SeenSet) Seen() map[SaleKey]int64 { return s.latest }

// Len returns the number of remembered keys.
func (s *SeenSet) Len() int { return len(s.latest) }

// Add remembers a batch applied after every batch the set holds: the member
// and score Delta.SeenBlob returned.
func (s *SeenSet) Add(member []byte, newest int64) {
	if len(member) < seenOneLen {
		return
	}
	s.add(parseSeenMember(member, newest))
}

// parseSeenMember reads a member of one sale or of a batch.
func parseSeenMember(m []byte, score int64) seenBlob {
	if len(m) == seenOneLen {
		k := m[:len(SaleKey{})]
		entry := binary.BigEndian.AppendUint64(slices.Clip(k), uint64(score))
		return seenBlob{order: int64(binary.BigEndian.Uint64(m[len(SaleKey{}):])), newest: score, entries: entry}
	}
	return seenBlob{order: int64(binary.BigEndian.Uint64(m)), newest: score, entries: m[seenHeaderLen:]}
}

func (s *SeenSet) add(b seenBlob) {
	for e := b.entries; len(e) >= seenEntryLen; e = e[seenEntryLen:] {
		k := SaleKey(e[:len(SaleKey{})])
		if _, ok := s.latest[k]; ok {
			s.older[k]++
		}
		s.latest[k] = int64(binary.BigEndian.Uint64(e[len(SaleKey{}):]))
	}
	heap.Push(&s.blobs, b)
}

// Forget drops the members whose newest timestamp is before before, as
// apply.lua's ZREMRANGEBYSCORE does; zero forgets nothing.
func (s *SeenSet) Forget(before int64) {
	if before == 0 {
		return
	}
	for len(s.blobs) > 0 && s.blobs[0].newest < before {
		b := heap.Pop(&s.blobs).(seenBlob)
		for e := b.entries; len(e) >= seenEntryLen; e = e[seenEntryLen:] {
			k := SaleKey(e[:len(SaleKey{})])
			ms := int64(binary.BigEndian.Uint64(e[len(SaleKey{}):]))
			if s.older[k] > 0 {
				// A key counted more than once: the latest remaining
				// copy becomes the one later copies are compared with.
				s.older[k]--
				if s.older[k] == 0 {
					delete(s.older, k)
				}
				if s.latest[k] == ms {
					s.latest[k] = s.latestCopy(k)
				}
				continue
			}
			delete(s.latest, k)
		}
	}
}

// latestCopy finds the latest remaining copy of a key counted more than
// once, by a scan: it happens only to sales resent further apart than the
// window.
func (s *SeenSet) latestCopy(k SaleKey) int64 {
	var ms int64
	order := int64(-2)
	for _, b := range s.blobs {
		if b.order < order {
			continue
		}
		for e := b.entries; len(e) >= seenEntryLen; e = e[seenEntryLen:] {
			if SaleKey(e[:len(SaleKey{})]) == k {
				ms, order = int64(binary.BigEndian.Uint64(e[len(SaleKey{}):])), b.order
			}
		}
	}
	return ms
}

// seenHeap orders members by their newest timestamp, for Forget.
type seenHeap []seenBlob

func (h seenHeap) Len() int           { return len(h) }
func (h seenHeap) Less(i, j int) bool { return h[i].newest < h[j].newest }
func (h seenHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seenHeap) Push(x any)        { *h = append(*h, x.(seenBlob)) }
func (h *seenHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
