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

	"blackfriday.local/contract/record"
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
// the measurement's own and the connection's (INFO, HELLO, PING, CLIENT,
// SCAN, DEL). Commands run by a script count as calls of their own in Redis
// 7 and Valkey, so the calls less those the client sent are the ones
// scripts ran.
func commandCalls(tb testing.TB, client rueidis.Client) int64 {
	tb.Helper()
	info, err := client.Do(context.Background(), client.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		tb.Fatalf("INFO commandstats = %v", err)
	}
	var total int64
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
		case "info", "hello", "ping", "client|setinfo", "client|tracking", "scan", "del":
		default:
			total += n
		}
	}
	return total
}

// salesGen makes realistic sales records, each with its own sale id: four
// categories, a quarter of the sales in electronics, 50 products per
// category with skewed (Zipf) popularity, sold one millisecond apart, across
// the ingest protocols.
type salesGen struct {
	tb    testing.TB
	rng   *rand.Rand
	zipf  *rand.Zipf
	start time.Time
	seq   int
}

func newSalesGen(tb testing.TB) *salesGen {
	rng := rand.New(rand.NewPCG(1, 2))
	return &salesGen{tb: tb, rng: rng, zipf: rand.NewZipf(rng, 1.2, 1, 49), start: time.Now().Add(-time.Hour)}
}

var (
	benchProtocols = []string{"connect+json", "connect+proto", "grpc", "grpc-web", "legacy-rest", "legacy-grpc"}
	benchPrefixes  = map[salesv1.Category]string{1: "E", 2: "C", 3: "H", 4: "B"}
)

// batch returns the next size records.
func (g *salesGen) batch(size int) []*kgo.Record {
	out := make([]*kgo.Record, size)
	for j := range out {
		cat := salesv1.Category(1 + g.rng.IntN(4))
		id := fmt.Sprintf("%s%03d", benchPrefixes[cat], g.zipf.Uint64())
		at := g.start.Add(time.Duration(g.seq) * time.Millisecond)
		s := &salesv1.Sale{
			Category:   cat,
			ProductId:  id,
			PriceCents: 100 + g.rng.Int64N(500000),
			Quantity:   int32(1 + g.rng.IntN(3)),
			SaleId:     fmt.Sprintf("0197c0de-%012d", g.seq),
			SoldAt:     timestamppb.New(at),
		}
		value, err := proto.Marshal(s)
		if err != nil {
			g.tb.Fatal(err)
		}
		out[j] = &kgo.Record{
			Topic: "sales", Key: []byte(id), Value: value, Timestamp: at,
			Headers: []kgo.RecordHeader{
				{Key: record.HeaderContentType, Value: []byte(record.ContentTypeProtobuf)},
				{Key: record.HeaderSchema, Value: []byte(record.Schema())},
				{Key: record.HeaderIngestProtocol, Value: []byte(benchProtocols[g.seq%len(benchProtocols)])},
			},
		}
		g.seq++
	}
	return out
}

// BenchmarkFoldApply folds batches of 1,000 sales records and applies each
// with one script call, as the consumer does: with dedup on (the default
// window), the sale ids the partition counted already come from its copy of
// the dedup set (aggregate.SeenSet), read once from Valkey and kept in step
// with each apply. Run it alone against an otherwise idle server: the inner command
// count comes from server-wide INFO commandstats.
func BenchmarkFoldApply(b *testing.B) {
	for _, window := range []time.Duration{10 * time.Minute, 0} {
		name := "dedup=" + window.String()
		if window == 0 {
			name = "dedup=off"
		}
		b.Run(name, func(b *testing.B) { benchmarkFoldApply(b, window) })
	}
}

func benchmarkFoldApply(b *testing.B, window time.Duration) {
	const size = 1000
	raw, prefix := valkeytest.New(b)
	client := &countingClient{Client: raw}
	st := New(client, prefix, 25*time.Hour)
	dec := aggregate.NewDecoder()
	gen := newSalesGen(b)
	ctx := context.Background()

	base, next := int64(-1), int64(0)
	seen := aggregate.NewSeenSet()
	apply := func(records []*kgo.Record) {
		for _, r := range records {
			r.Offset = next
			next++
		}
		batch, err := dec.DecodeBatch("sales", 0, records)
		if err != nil {
			b.Fatal(err)
		}
		dd := aggregate.Dedup{Window: window}
		if window > 0 {
			dd.Seen = seen.Seen()
		}
		d, err := batch.Fold(dd)
		if err != nil {
			b.Fatal(err)
		}
		out, err := st.Apply(ctx, d, Position{Offset: base, Epoch: -1}, Position{Offset: d.Next, Epoch: -1})
		if err != nil || !out.Applied {
			b.Fatalf("Apply(base %d) = %+v, %v, want applied", base, out, err)
		}
		base = d.Next
		if window > 0 {
			seen.Add(d.SeenBlob())
			seen.Forget(d.SeenTrimBefore)
		}
	}
	// Load the script outside the measurement, as a long-running
	// aggregator would have.
	apply(gen.batch(size))

	serverBefore := commandCalls(b, raw)
	sentBefore := client.commands.Load()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		// Every sale is new, as in production: a replayed sale id would
		// be dropped as a duplicate and cost nothing.
		b.StopTimer()
		records := gen.batch(size)
		b.StartTimer()
		apply(records)
		n++
	}
	server := commandCalls(b, raw) - serverBefore
	sent := client.commands.Load() - sentBefore
	sales := float64(n * size)
	b.ReportMetric(float64(sent)/sales, "valkey_cmds/sale")
	b.ReportMetric(float64(server-sent)/sales, "inner_cmds/sale")
	b.ReportMetric(sales/b.Elapsed().Seconds(), "sales/s")
}
