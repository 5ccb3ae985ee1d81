package ingest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

const topic = "sales"

// neverTimeout is a produce timeout no call in these tests reaches: a call
// made with it that answers did not answer for its timeout. (The tests of
// time run in synctest bubbles, where time is virtual and exact.)
const neverTimeout = 20 * time.Second

func newProducer(t *testing.T, k *fakeKafka, cfg Config) *Producer {
	t.Helper()
	cfg.Brokers, cfg.Topic, cfg.Partitions = k.ListenAddrs(), topic, 6
	cfg.ClientOpts = append(cfg.ClientOpts, k.dial())
	if cfg.ProduceTimeout == 0 {
		cfg.ProduceTimeout = 3 * time.Second
	}
	if cfg.MaxBufferedRecords == 0 {
		cfg.MaxBufferedRecords = 1000
	}
	var w io.Writer = io.Discard
	if os.Getenv("KGO_DEBUG") != "" {
		w = os.Stderr
	}
	p, err := New(cfg, slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

var saleSeq struct {
	mu sync.Mutex
	n  int
}

// testSale returns a complete, valid sale with a unique id.
func testSale(t *testing.T) *salesv1.Sale {
	t.Helper()
	saleSeq.mu.Lock()
	saleSeq.n++
	n := saleSeq.n
	saleSeq.mu.Unlock()
	s := &salesv1.Sale{
		Category:   salesv1.Category(1 + n%4),
		ProductId:  "P" + strconv.Itoa(n%7),
		PriceCents: int64(100 + n),
		Quantity:   int32(1 + n%5),
		SoldAt:     timestamppb.New(time.Unix(1_700_000_000+int64(n), 0)),
	}
	if err := Stamp(s, time.Now()); err != nil {
		t.Fatal(err)
	}
	return s
}

// written counts the records on the topic.
func written(t *testing.T, k *fakeKafka) int64 {
	t.Helper()
	cl := k.client(t)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	offsets, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("ListEndOffsets: %v", err)
	}
	var n int64
	offsets.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// consume reads every record on the topic.
func consume(t *testing.T, k *fakeKafka) []*kgo.Record {
	t.Helper()
	want := written(t, k)
	cl := k.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for int64(len(recs)) < want {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(recs), want, err)
		}
		recs = append(recs, fetches.Records()...)
	}
	return recs
}

// warmUp records sales until one succeeds: the first call also fetches
// metadata and a producer id, which a short produce timeout may not cover on
// a loaded machine.
func warmUp(t *testing.T, p *Producer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := p.Record(context.Background(), testSale(t))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Record() never succeeded before the fault: %v", err)
		}
	}
}

// checkRecord checks a record against the Kafka record contract.
func checkRecord(t *testing.T, r *kgo.Record, want *salesv1.Sale, protocol record.Protocol) {
	t.Helper()
	if string(r.Key) != want.GetProductId() {
		t.Errorf("record key = %q, want %q", r.Key, want.GetProductId())
	}
	got := &salesv1.Sale{}
	if err := proto.Unmarshal(r.Value, got); err != nil {
		t.Fatalf("record value does not decode as a Sale: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("record value = %v, want %v", got, want)
	}
	wantHeaders := []kgo.RecordHeader{
		{Key: "content-type", Value: []byte("application/x-protobuf")},
		{Key: "schema", Value: []byte("blackfriday.sales.v1.Sale")},
		{Key: "ingest-protocol", Value: []byte(protocol)},
	}
	if !slices.EqualFunc(r.Headers, wantHeaders, func(a, b kgo.RecordHeader) bool {
		return a.Key == b.Key && string(a.Value) == string(b.Value)
	}) {
		t.Errorf("record headers = %v, want %v", r.Headers, wantHeaders)
	}
}

func TestRecordWritesTheContract(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	p := newProducer(t, c, Config{})
	ctx := context.Background()

	want := map[string]*salesv1.Sale{}
	protos := map[string]record.Protocol{}
	for _, proto := range append(record.Protocols(), record.ProtocolUnknown) {
		s := testSale(t)
		if err := p.Record(WithProtocol(ctx, proto), s); err != nil {
			t.Fatalf("Record(%s) = %v, want nil", proto, err)
		}
		want[s.GetSaleId()], protos[s.GetSaleId()] = s, proto
	}
	batch := []*salesv1.Sale{testSale(t), testSale(t), testSale(t)}
	for i, err := range p.RecordAll(WithProtocol(ctx, record.ProtocolGRPC), batch) {
		if err != nil {
			t.Fatalf("RecordAll()[%d] = %v, want nil", i, err)
		}
		want[batch[i].GetSaleId()], protos[batch[i].GetSaleId()] = batch[i], record.ProtocolGRPC
	}
	// A context without a protocol is recorded as unknown.
	s := testSale(t)
	if err := p.Record(ctx, s); err != nil {
		t.Fatalf("Record() = %v, want nil", err)
	}
	want[s.GetSaleId()], protos[s.GetSaleId()] = s, record.ProtocolUnknown

	recs := consume(t, c)
	if len(recs) != len(want) {
		t.Fatalf("topic holds %d records, want %d", len(recs), len(want))
	}
	for _, r := range recs {
		got := &salesv1.Sale{}
		if err := proto.Unmarshal(r.Value, got); err != nil {
			t.Fatal(err)
		}
		w, ok := want[got.GetSaleId()]
		if !ok {
			t.Fatalf("record with unexpected sale_id %q", got.GetSaleId())
		}
		checkRecord(t, r, w, protos[got.GetSaleId()])
	}
}

// produceErrors answers every produce request with code for each partition.
func produceErrors(c *fakeKafka, code int16) {
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.ProduceRequest)
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// sleepProduce holds every produce request until release is closed.
func sleepProduce(c *fakeKafka, release <-chan struct{}) {
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
}

// TestRecordFailures runs on virtual time (synctest): a call answers at its
// produce timeout exactly, or before it.
func TestRecordFailures(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	tests := []struct {
		name  string
		fault func(c *fakeKafka, release <-chan struct{})
		want  []error
		// afterRelease is how many records the topic holds once the fault
		// is lifted: the honest answer for an unconfirmed sale.
		afterRelease int64
	}{
		{
			name:  "broker error",
			fault: func(c *fakeKafka, _ <-chan struct{}) { produceErrors(c, kerr.NotEnoughReplicas.Code) },
			// franz-go retries, and notices the deadline only between
			// tries: it may still be retrying when the call gives up.
			want: []error{ErrNotWritten, ErrUnconfirmed},
		},
		{
			name:  "fatal broker error",
			fault: func(c *fakeKafka, _ <-chan struct{}) { produceErrors(c, kerr.CorruptMessage.Code) },
			want:  []error{ErrNotWritten},
		},
		{
			name:         "broker never answers",
			fault:        sleepProduce,
			want:         []error{ErrUnconfirmed},
			afterRelease: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t)
				p := newProducer(t, c, Config{ProduceTimeout: timeout})
				// Learn the metadata first, so the fault hits the produce.
				warmUp(t, p)
				before := written(t, c)
				release := make(chan struct{})
				tt.fault(c, release)

				sale := testSale(t)
				start := time.Now()
				err := p.Record(context.Background(), sale)
				took := time.Since(start)
				if !slices.ContainsFunc(tt.want, func(want error) bool { return errors.Is(err, want) }) {
					t.Errorf("Record() = %v, want %v", err, tt.want)
				}
				if se := new(SaleError); !errors.As(err, &se) || se.SaleID != sale.GetSaleId() {
					t.Errorf("Record() = %v, want a SaleError for %s", err, sale.GetSaleId())
				}
				if took > timeout {
					t.Errorf("Record() took %v, want an answer by the %v produce timeout", took, timeout)
				}
				close(release)
				// Every request in flight is answered before Wait returns.
				synctest.Wait()
				if got, want := written(t, c), before+tt.afterRelease; got != want {
					t.Errorf("topic holds %d records, want %d", got, want)
				}
			})
		})
	}
}

func TestRecordBufferFull(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		// A call that waited for room would wait up to the produce timeout.
		p := newProducer(t, c, Config{ProduceTimeout: neverTimeout, MaxBufferedRecords: 2})
		warmUp(t, p)
		release := make(chan struct{})
		sleepProduce(c, release)

		// Two sales fill the buffer while the broker holds them.
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { _ = p.Record(context.Background(), testSale(t)) })
		}
		synctest.Wait()
		if n := p.client.BufferedProduceRecords(); n != 2 {
			t.Fatalf("BufferedProduceRecords() = %d with two sales held by the broker, want 2", n)
		}
		start := time.Now()
		err := p.Record(context.Background(), testSale(t))
		if took := time.Since(start); !errors.Is(err, ErrBufferFull) || took != 0 {
			t.Errorf("Record() with a full buffer = %v after %v, want ErrBufferFull at once", err, took)
		}
		// A batch is refused sale by sale.
		errs := p.RecordAll(context.Background(), []*salesv1.Sale{testSale(t), testSale(t)})
		for i, err := range errs {
			if !errors.Is(err, ErrBufferFull) {
				t.Errorf("RecordAll()[%d] with a full buffer = %v, want ErrBufferFull", i, err)
			}
		}
		close(release)
		wg.Wait()
	})
}

// TestRecordHonoursCallerContext runs on virtual time (synctest): a caller
// that leaves is answered the moment it does.
func TestRecordHonoursCallerContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		p := newProducer(t, c, Config{ProduceTimeout: neverTimeout})
		warmUp(t, p)
		release := make(chan struct{})
		sleepProduce(c, release)
		defer close(release)

		const deadline = 300 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		err := p.Record(ctx, testSale(t))
		if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took != deadline {
			t.Errorf("Record() with a %v deadline = %v after %v, want DeadlineExceeded at it, not at the produce timeout", deadline, err, took)
		}

		ctx, cancel = context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start = time.Now()
		if err := p.Record(ctx, testSale(t)); !errors.Is(err, context.Canceled) || time.Since(start) != 100*time.Millisecond {
			t.Errorf("Record() canceled after 100ms = %v after %v, want context.Canceled at once", err, time.Since(start))
		}
	})
}

// TestBreakerFailsFastAndRecovers runs on virtual time (synctest): every
// call during the outage answers by the produce timeout, and recovery is
// measured exactly.
func TestBreakerFailsFastAndRecovers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const timeout = 300 * time.Millisecond
		c := newCluster(t, kfake.DataDir(t.TempDir()))
		p := newProducer(t, c, Config{
			ProduceTimeout:   timeout,
			BreakerThreshold: 3,
			BreakerCoolDown:  200 * time.Millisecond,
		})
		var acked []string
		record := func() (time.Duration, error) {
			s := testSale(t)
			begin := time.Now()
			err := p.Record(context.Background(), s)
			if err == nil {
				acked = append(acked, s.GetSaleId())
			}
			return time.Since(begin), err
		}
		warmUp(t, p)

		c.Close()
		var fastFails int
		for i := 0; fastFails < 3; i++ {
			if i == 50 {
				t.Fatalf("the breaker never opened: %d calls, %d fast failures", i, fastFails)
			}
			took, err := record()
			switch {
			case err == nil:
				t.Fatalf("Record() during the outage = nil, want an error")
			case took > timeout:
				t.Fatalf("Record() during the outage took %v, want an answer by the %v produce timeout", took, timeout)
			case errors.Is(err, ErrSalesLogDown):
				// The open breaker answers before producing anything.
				if took != 0 {
					t.Fatalf("Record() with the breaker open took %v, want an answer at once", took)
				}
				fastFails++
			case !errors.Is(err, ErrNotWritten) && !errors.Is(err, ErrUnconfirmed):
				t.Fatalf("Record() during the outage = %v, want ErrNotWritten or ErrUnconfirmed", err)
			}
		}

		c.restart(t)
		back := time.Now()
		// Recovered means 20 calls in a row succeed; until then every call
		// still answers within the timeout.
		for streak := 0; streak < 20; {
			took, err := record()
			if err == nil {
				streak++
				continue
			}
			streak = 0
			if took > timeout {
				t.Fatalf("Record() while recovering took %v, want an answer by the %v produce timeout", took, timeout)
			}
			if time.Since(back) > 30*time.Second {
				t.Fatalf("Record() did not recover within 30s of Kafka's return: %v", err)
			}
			// A client retries at its own pace, not in a tight loop.
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("recovered %v after Kafka's return", time.Since(back))

		// Every sale answered OK is on the topic.
		onTopic := map[string]bool{}
		for _, r := range consume(t, c) {
			s := &salesv1.Sale{}
			if err := proto.Unmarshal(r.Value, s); err != nil {
				t.Fatal(err)
			}
			onTopic[s.GetSaleId()] = true
		}
		for _, id := range acked {
			if !onTopic[id] {
				t.Errorf("sale %s was acknowledged but is not on the topic", id)
			}
		}
	})
}

func TestRecordAfterClose(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	p := newProducer(t, c, Config{})
	if err := p.Close(context.Background()); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	if err := p.Record(context.Background(), testSale(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("Record() after Close = %v, want ErrClosed", err)
	}
}

// TestLingerSparesBatches: with a linger, single sales wait for it while a
// batch goes out at once, through its own client, and both are written and
// counted in Buffered's and BufferLimit's figures. It runs on virtual time
// (synctest), so the waits are exact.
func TestLingerSparesBatches(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const linger = time.Second
		c := newCluster(t)
		p := newProducer(t, c, Config{Linger: linger, ProduceTimeout: neverTimeout, MaxBufferedRecords: 100})
		if p.batch == p.client {
			t.Fatal("a lingering producer uses one client for batches and single sales")
		}
		if got := p.BufferLimit(); got != 200 {
			t.Errorf("BufferLimit() = %d, want 200 (MaxBufferedRecords for each client)", got)
		}
		ctx := context.Background()
		// Both clients learn the metadata and a producer id first, so that
		// the single sale waits for nothing but the linger.
		warmUp(t, p)
		for i, err := range p.RecordAll(ctx, []*salesv1.Sale{testSale(t)}) {
			if err != nil {
				t.Fatalf("RecordAll()[%d] = %v, want nil", i, err)
			}
		}

		single := make(chan error, 1)
		began := time.Now()
		go func() { single <- p.Record(ctx, testSale(t)) }()
		// The single sale is in its client's buffer before the batch starts.
		synctest.Wait()
		if n := p.client.BufferedProduceRecords(); n != 1 {
			t.Fatalf("the single sale's client holds %d records, want 1", n)
		}
		batch := []*salesv1.Sale{testSale(t), testSale(t), testSale(t)}
		for i, err := range p.RecordAll(ctx, batch) {
			if err != nil {
				t.Fatalf("RecordAll()[%d] = %v, want nil", i, err)
			}
		}
		if took := time.Since(began); took != 0 {
			t.Errorf("RecordAll() took %v, want no wait: the %v linger is not its", took, linger)
		}
		synctest.Wait()
		select {
		case err := <-single:
			t.Errorf("Record() = %v before the %v linger was over, want it to linger", err, linger)
		default:
		}
		if n := p.client.BufferedProduceRecords(); n != 1 {
			t.Errorf("the single sale's client holds %d records after the batch was written, want 1 (it lingers)", n)
		}
		if err := <-single; err != nil || time.Since(began) != linger {
			t.Fatalf("Record() = %v after %v, want nil once the %v linger is over", err, time.Since(began), linger)
		}
		if n := p.Buffered(); n != 0 {
			t.Errorf("Buffered() = %d after every call was answered, want 0", n)
		}
		if n := len(consume(t, c)); n != 6 {
			t.Errorf("topic holds %d records, want 6", n)
		}

		// Without a linger there is one client.
		if q := newProducer(t, c, Config{MaxBufferedRecords: 100}); q.batch != q.client || q.BufferLimit() != 100 {
			t.Errorf("without a linger: separate batch client %v, BufferLimit() %d; want one client, 100", q.batch != q.client, q.BufferLimit())
		}
	})
}
