package aggregate

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// DedupSlack is how much longer than the window a counted sale id is
// remembered, measured from the newest record of its partition. Record
// timestamps are stamped by the producers (several api replicas), so a
// partition's timestamps are almost but not quite in order; the slack lets
// a record stamped up to this much earlier than its predecessors still find
// the ids they counted, whatever the batch boundaries were, which keeps the
// dedup verdicts the same on a replay.
const DedupSlack = time.Minute

// SaleKey is the dedup key of a sale id: the first 16 bytes of its SHA-256.
// A fixed 16 bytes bounds the memory per remembered sale whatever the id's
// length (up to 64 characters), and at 128 bits a collision between two
// distinct ids of one partition's window is negligible: with n ids in the
// window the chance of any collision is about n²/2^129, 1.5e-25 for ten
// million.
type SaleKey [16]byte

// KeyOf returns the dedup key of a sale id.
func KeyOf(saleID string) SaleKey {
	// Hashing a copy on the stack spares an allocation per sale: sale ids
	// are at most 64 bytes long once validated.
	var buf [64]byte
	var sum [sha256.Size]byte
	if len(saleID) <= len(buf) {
		sum = sha256.Sum256(buf[:copy(buf[:], saleID)])
	} else {
		sum = sha256.Sum256([]byte(saleID))
	}
	return SaleKey(sum[:16])
}

// Dedup tells Fold which sales of a partition were counted already.
//
// A sale is a duplicate when a sale with the same id was counted, on the
// same partition, from a record stamped at most Window before or after its
// own (the later of two copies may be written first). A copy stamped
// further away than Window from the counted one is counted again, and
// becomes the one later copies are compared with. The verdict depends only
// on the records and their order in the partition, so a replay of the topic
// reaches the same verdicts.
type Dedup struct {
	// Window is how far apart, by record timestamp, two copies of a sale
	// may be written and still count once. Zero turns dedup off.
	Window time.Duration
	// Seen maps the keys of sales counted before the batch to the record
	// timestamp (Unix ms) of their counted copy. Keys absent were not
	// counted within the window. nil means none.
	Seen map[SaleKey]int64
}

// Batch is one partition's records, decoded: its sales and dead letters.
type Batch struct {
	Topic     string
	Partition int32
	// Sales are the records that decoded into valid sales, in offset
	// order.
	Sales []Sale
	// Dead are the records that cannot be counted, in offset order.
	Dead []DeadLetter
}

// DecodeBatch decodes one partition's records, in offset order. It never
// fails: a record that cannot be counted becomes a dead letter.
func (dec *Decoder) DecodeBatch(topic string, partition int32, records []*kgo.Record) (*Batch, error) {
	b := &Batch{Topic: topic, Partition: partition, Sales: make([]Sale, 0, len(records))}
	// A batch sells far fewer products than it has sales: their ids are
	// allocated once per batch, not once per sale.
	products := make(map[string]string)
	for _, r := range records {
		var sale Sale
		err := dec.decode(r, &sale, products)
		if err != nil {
			var dl *DeadLetterError
			if !errors.As(err, &dl) {
				return nil, fmt.Errorf("decode offset %d: %w", r.Offset, err)
			}
			b.Dead = append(b.Dead, DeadLetter{Record: r, Err: dl})
			continue
		}
		b.Sales = append(b.Sales, sale)
	}
	return b, nil
}

// Fold folds the batch into a finished Delta, dropping the sales dd says
// were counted before and the repeats within the batch. With dedup on, the
// Delta also lists the keys it counted, to be remembered with it.
func (b *Batch) Fold(dd Dedup) (*Delta, error) {
	d := NewDelta(b.Topic, b.Partition)
	for _, dl := range b.Dead {
		if err := d.AddDeadLetter(dl.Record.Offset); err != nil {
			return nil, err
		}
	}
	window := dd.Window.Milliseconds()
	if dd.Window > 0 {
		d.Seen = make(map[SaleKey]int64)
	}
	var newest int64
	for i, s := range b.Sales {
		if dd.Window > 0 {
			if i == 0 || s.RecordMillis > newest {
				newest = s.RecordMillis
			}
			k := KeyOf(s.SaleID)
			prev, ok := d.Seen[k]
			if !ok {
				prev, ok = dd.Seen[k]
			}
			if ok && abs(s.RecordMillis-prev) <= window {
				if err := d.AddDuplicate(s.Offset); err != nil {
					return nil, err
				}
				continue
			}
			if _, again := d.Seen[k]; !again {
				d.seenOrder = append(d.seenOrder, k)
			}
			d.Seen[k] = s.RecordMillis
		}
		if err := d.Add(s); err != nil {
			return nil, err
		}
	}
	if dd.Window > 0 && len(b.Sales) > 0 {
		d.SeenTrimBefore = newest - window - DedupSlack.Milliseconds()
	}
	d.Finish()
	return d, nil
}

// AddDuplicate counts one sale dropped as a copy of one counted before.
func (d *Delta) AddDuplicate(offset int64) error {
	n, err := addInt64(d.Duplicates, 1)
	if err != nil {
		return fmt.Errorf("duplicates: %w", err)
	}
	d.Duplicates = n
	d.observe(offset)
	return nil
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
