package analytics

import (
	"cmp"
	"context"
	"errors"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// What a snapshot holds beyond the summary.
const (
	// snapshotRateWindow is the sales-rate window of a snapshot.
	snapshotRateWindow = time.Minute
	// snapshotRankLimit is how many products each end of a ranking holds.
	snapshotRankLimit = 5
)

// TopicOffsets reads the sales topic's offsets from Kafka, for the
// aggregator's lag.
type TopicOffsets interface {
	// Offsets returns the log start and end offsets of every partition.
	Offsets(ctx context.Context) (map[int32]PartitionOffsets, error)
}

// PartitionOffsets are the bounds of one partition's log.
type PartitionOffsets struct {
	// Start is the offset of the oldest record still in the log.
	Start int64
	// End is the offset the next record will get.
	End int64
}

// fingerprint identifies a state of the aggregates and of Kafka's offsets.
type fingerprint uint64

// fingerprint reads the offsets and totals hashes, which the aggregator
// rewrites in every batch it applies, and hashes them with the sequence
// number of Kafka's offsets, so a change of either changes the result. It
// returns the offsets hash too, for the lag.
func (s *Service) fingerprint(ctx context.Context, kafkaSeq uint64) (map[string]string, fingerprint, error) {
	var offsets, totals map[string]string
	err := s.query(ctx, func(ctx context.Context, c rueidis.Client) error {
		replies := c.DoMulti(ctx,
			c.B().Hgetall().Key(s.keys.Offsets()).Build(),
			c.B().Hgetall().Key(s.keys.Totals()).Build())
		var err error
		if offsets, err = replies[0].AsStrMap(); err != nil {
			return storeErr(err)
		}
		if totals, err = replies[1].AsStrMap(); err != nil {
			return storeErr(err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	h := fnv.New64a()
	for _, m := range []map[string]string{offsets, totals} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			h.Write([]byte(k))
			h.Write([]byte{0})
			h.Write([]byte(m[k]))
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	h.Write(strconv.AppendUint(nil, kafkaSeq, 10))
	return offsets, fingerprint(h.Sum64()), nil
}

// snapshot reads everything a live view shows. The reads run concurrently;
// rueidis pipelines them on its connection.
func (s *Service) snapshot(ctx context.Context, topic string, offsets map[string]string, k *kafkaState) (*salesv1.SummarySnapshot, error) {
	snap := &salesv1.SummarySnapshot{
		ReadAt: timestampOf(s.now()),
		Lag:    lagOf(topic, offsets, k),
	}
	rankCats := append([]salesv1.Category{salesv1.Category_CATEGORY_UNSPECIFIED}, keys.Categories()...)
	snap.Rankings = make([]*salesv1.Ranking, len(rankCats))
	errs := make([]error, 4+2*len(rankCats))
	var wg sync.WaitGroup
	wg.Go(func() {
		snap.Summary, errs[0] = s.GetSummary(ctx, &salesv1.GetSummaryRequest{})
	})
	wg.Go(func() {
		snap.SalesRate, errs[1] = s.GetSalesRate(ctx, &salesv1.GetSalesRateRequest{Window: durationpb.New(snapshotRateWindow)})
	})
	wg.Go(func() {
		var h *salesv1.GetPriceHistoryResponse
		h, errs[2] = s.GetPriceHistory(ctx, &salesv1.GetPriceHistoryRequest{})
		snap.PriceHistory = h.GetProducts()
	})
	wg.Go(func() {
		snap.Ingest, errs[3] = s.ingest(ctx)
	})
	for i, cat := range rankCats {
		r := &salesv1.Ranking{Category: cat}
		snap.Rankings[i] = r
		for j, order := range []salesv1.RankOrder{salesv1.RankOrder_RANK_ORDER_BEST, salesv1.RankOrder_RANK_ORDER_WORST} {
			wg.Go(func() {
				top, err := s.GetTopProducts(ctx, &salesv1.GetTopProductsRequest{Category: cat, Limit: snapshotRankLimit, Order: order})
				errs[4+2*i+j] = err
				if j == 0 {
					r.Best = top.GetProducts()
				} else {
					r.Worst = top.GetProducts()
				}
			})
		}
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return snap, nil
}

// ingest reads the sales counted per ingest protocol, most first.
func (s *Service) ingest(ctx context.Context) ([]*salesv1.IngestCount, error) {
	var fields map[string]int64
	err := s.query(ctx, func(ctx context.Context, c rueidis.Client) error {
		var err error
		fields, err = c.Do(ctx, c.B().Hgetall().Key(s.keys.Ingest()).Build()).AsIntMap()
		if err != nil {
			if errors.Is(err, strconv.ErrSyntax) || errors.Is(err, strconv.ErrRange) {
				return errors.Join(ErrCorrupt, err)
			}
			return storeErr(err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*salesv1.IngestCount, 0, len(fields))
	for p, n := range fields {
		out = append(out, &salesv1.IngestCount{Protocol: p, Sales: n})
	}
	slices.SortFunc(out, func(a, b *salesv1.IngestCount) int {
		if a.GetSales() != b.GetSales() {
			return cmp.Compare(b.GetSales(), a.GetSales())
		}
		return cmp.Compare(a.GetProtocol(), b.GetProtocol())
	})
	return out, nil
}

// lagOf computes the lag of each partition from Kafka's offsets and the
// offsets stored with the aggregates (keys.OffsetField of the offsets
// hash). A partition without a stored offset has counted nothing,
// and records gone from the log can never be counted, so the counted offset
// is at least the log start.
func lagOf(topic string, stored map[string]string, k *kafkaState) *salesv1.AggregatorLag {
	lag := &salesv1.AggregatorLag{Known: k.err == nil && k.offsets != nil}
	if k.offsets == nil {
		return lag
	}
	lag.ReadAt = timestampOf(k.readAt)
	for _, p := range slices.Sorted(maps.Keys(k.offsets)) {
		o := k.offsets[p]
		counted := o.Start
		if v, err := strconv.ParseInt(stored[keys.OffsetField(topic, p)], 10, 64); err == nil {
			counted = max(counted, v)
		}
		n := max(o.End-counted, 0)
		lag.Records += n
		lag.Partitions = append(lag.Partitions, &salesv1.PartitionLag{
			Partition: p, EndOffset: o.End, CountedOffset: counted, Records: n,
		})
	}
	return lag
}

// kafkaState is the last read of Kafka's offsets.
type kafkaState struct {
	// seq changes whenever what was read changes.
	seq     uint64
	offsets map[int32]PartitionOffsets // the last offsets read, nil if none
	readAt  time.Time
	err     error // of the last read
}

// kafkaWatch polls Kafka's offsets in the background, so a slow or absent
// Kafka never delays the snapshots.
type kafkaWatch struct{ state atomic.Pointer[kafkaState] }

// latest returns the last read, or an empty state before the first.
func (w *kafkaWatch) latest() *kafkaState {
	if k := w.state.Load(); k != nil {
		return k
	}
	return &kafkaState{}
}

// poll reads the offsets every interval until ctx is done, each read bounded
// by timeout.
func (w *kafkaWatch) poll(ctx context.Context, src TopicOffsets, interval, timeout time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		offsets, err := src.Offsets(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		prev := w.latest()
		next := &kafkaState{seq: prev.seq, offsets: offsets, readAt: time.Now(), err: err}
		if err != nil {
			next.offsets, next.readAt = prev.offsets, prev.readAt
		}
		if (err == nil) != (prev.err == nil) || !maps.Equal(offsets, prev.offsets) && err == nil {
			next.seq++
		}
		w.state.Store(next)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func timestampOf(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
