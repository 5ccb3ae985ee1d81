package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"

	"blackfriday.local/services/aggregator/internal/aggregate"
	"blackfriday.local/services/aggregator/internal/valkeytest"
)

// countingClient counts the commands the client sends: each Do is one
// round trip, each DoMulti one pipeline of several commands.
type countingClient struct {
	rueidis.Client
	commands atomic.Int64
}

func (c *countingClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	c.commands.Add(1)
	return c.Client.Do(ctx, cmd)
}

func (c *countingClient) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	c.commands.Add(int64(len(cmds)))
	return c.Client.DoMulti(ctx, cmds...)
}

// commandCalls sums the calls of every command in INFO commandstats, except
// the ones a client sends itself (EVALSHA, EVAL) and the measurement's own.
// Commands run by a script count as calls of their own in Redis 7 and
// Valkey.
func commandCalls(tb testing.TB, client rueidis.Client) (inner, outer int64) {
	tb.Helper()
	info, err := client.Do(context.Background(), client.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		tb.Fatalf("INFO commandstats = %v", err)
	}
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			tb.Fatalf("INFO commandstats line %q: %v", line, err)
		}
		switch strings.TrimPrefix(name, "cmdstat_") {
		case "evalsha", "eval":
			outer += n
		case "info", "hello", "ping", "client|setinfo", "client|tracking", "scan", "del":
		default:
			inner += n
		}
	}
	return inner, outer
}

// salesBatches makes batches of realistic sales records: four categories,
// a quarter of the sales in electronics, 50 products per category with
// skewed (Zipf) popularity, sold one millisecond apart, across the ingest
// protocols.
func salesBatches(tb testing.TB, batches, size int) [][]*kgo.Record {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.2, 1, 49)
	protocols := []string{"connect+json", "connect+proto", "grpc", "grpc-web", "legacy-rest", "legacy-grpc"}
	prefixes := map[salesv1.Category]string{1: "E", 2: "C", 3: "H", 4: "B"}
	start := time.Now().Add(-time.Hour)
	out := make([][]*kgo.Record, batches)
	seq := 0
	for i := range out {
		out[i] = make([]*kgo.Record, size)
		for j := range out[i] {
			cat := salesv1.Category(1 + rng.IntN(4))
			id := fmt.Sprintf("%s%03d", prefixes[cat], zipf.Uint64())
			s := &salesv1.Sale{
				Category:   cat,
				ProductId:  id,
				PriceCents: 100 + rng.Int64N(500000),
				Quantity:   int32(1 + rng.IntN(3)),
				SaleId:     fmt.Sprintf("0197c0de-%012d", seq),
				SoldAt:     timestamppb.New(start.Add(time.Duration(seq) * time.Millisecond)),
			}
			value, err := proto.Marshal(s)
			if err != nil {
				tb.Fatal(err)
			}
			out[i][j] = &kgo.Record{
				Topic: "sales", Key: []byte(id), Value: value, Timestamp: start.Add(time.Duration(seq) * time.Millisecond),
				Headers: []kgo.RecordHeader{
					{Key: aggregate.HeaderContentType, Value: []byte(aggregate.ContentTypeProtobuf)},
					{Key: aggregate.HeaderSchema, Value: []byte(aggregate.SchemaSale)},
					{Key: aggregate.HeaderIngestProtocol, Value: []byte(protocols[seq%len(protocols)])},
				},
			}
			seq++
		}
	}
	return out
}

// BenchmarkFoldApply folds batches of 1,000 sales records and applies each
// with one script call. Run it alone against an otherwise idle server: the
// inner command count comes from server-wide INFO commandstats.
func BenchmarkFoldApply(b *testing.B) {
	const size = 1000
	raw, prefix := valkeytest.New(b)
	client := &countingClient{Client: raw}
	st := New(client, prefix, 25*time.Hour)
	dec, err := aggregate.NewDecoder()
	if err != nil {
		b.Fatal(err)
	}
	batches := salesBatches(b, 64, size)
	ctx := context.Background()

	base, next := int64(-1), int64(0)
	apply := func(records []*kgo.Record) {
		for _, r := range records {
			r.Offset = next
			next++
		}
		d, _, err := dec.Fold("sales", 0, records)
		if err != nil {
			b.Fatal(err)
		}
		out, err := st.Apply(ctx, d, base)
		if err != nil || !out.Applied {
			b.Fatalf("Apply(base %d) = %+v, %v, want applied", base, out, err)
		}
		base = d.Next
	}
	// Load the script outside the measurement, as a long-running
	// aggregator would have.
	apply(batches[0])

	innerBefore, outerBefore := commandCalls(b, raw)
	sentBefore := client.commands.Load()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		apply(batches[n%len(batches)])
		n++
	}
	innerAfter, outerAfter := commandCalls(b, raw)
	sales := float64(n * size)
	b.ReportMetric(float64(client.commands.Load()-sentBefore)/sales, "valkey_cmds/sale")
	b.ReportMetric(float64(outerAfter-outerBefore)/sales, "evalsha/sale")
	b.ReportMetric(float64(innerAfter-innerBefore)/sales, "inner_cmds/sale")
	b.ReportMetric(sales/b.Elapsed().Seconds(), "sales/s")
}
