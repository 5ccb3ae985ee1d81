package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// faultsDuration is how long each fault scenario keeps its load running:
// FAULTS_DURATION, 8s by default (make test); make faults runs longer.
func faultsDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("FAULTS_DURATION")
	if v == "" {
		return 8 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 3*time.Second {
		t.Fatalf("FAULTS_DURATION=%q: want a duration of at least 3s", v)
	}
	return d
}

// caller sends RecordSale through one protocol.
type caller struct {
	name   string // the ingest-protocol the api records
	client salesv1connect.SalesServiceClient
	// replica is the index of the api replica it calls (apiPorts).
	replica int
}

// callers returns a caller per protocol, for each api replica: the
// protocols of the first replica, then of the next.
func callers(s *stack) []caller {
	ports := s.apiPorts
	if len(ports) == 0 {
		ports = []int{s.apiPort}
	}
	var out []caller
	for i, port := range ports {
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		out = append(out,
			caller{"grpc", salesClientAt(s, base, h2c, connect.WithGRPC()), i},
			caller{"connect+proto", salesClientAt(s, base, http1), i},
			caller{"connect+json", salesClientAt(s, base, connectH2C, connect.WithProtoJSON()), i},
		)
	}
	return out
}

func (c caller) record(ctx context.Context, sale *salesv1.Sale) (string, error) {
	resp, err := c.client.RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: proto.Clone(sale).(*salesv1.Sale)})
	if err != nil {
		return "", err
	}
	return resp.GetSaleId(), nil
}

// loadOptions shape the clients of a load.
type loadOptions struct {
	clients int
	// tolerate makes failed calls part of the scenario rather than test
	// failures. The clients then behave as the api asks: a sale whose call
	// is answered Sale-Recorded: no is dropped (that attempt was certainly
	// not written); one answered Sale-Recorded: unknown is retried with the
	// same sale_id (from the Sale-Id metadata) until it is acknowledged,
	// whatever the retries are answered (a retry's "no" says nothing of
	// the first attempt).
	tolerate bool
	// clientIDs is how many of the clients choose each sale's sale_id
	// themselves; the others let the api assign it.
	clientIDs int
	// afterAck, when set, runs after each acknowledged sale, on the
	// client's goroutine; it may send the sale again (see load.resend).
	afterAck func(l *load, c caller, sale *salesv1.Sale, id string)
	// failover, when set, picks the caller a failed call is retried
	// through (another api replica), and makes a call that no api
	// answered (a refused connection, a reset stream) uncertain rather
	// than a test failure when the client chose the sale_id: it is
	// retried with that id.
	failover func(c caller) caller
	// from carries the ledger of an earlier load on the same pipeline
	// (what was acknowledged and refused), so that this one's audit
	// checks the whole topic and the whole aggregates.
	from *load
}

// load is continuous traffic through the real api: several concurrent
// clients, each sending sales one after another, and the ledger of what the
// api acknowledged, refused and left uncertain.
type load struct {
	t    *testing.T
	s    *stack
	gen  *saleGen
	tr   *truth
	opts loadOptions

	stopped atomic.Bool
	wg      sync.WaitGroup
	start   time.Time
	elapsed time.Duration
	// retryUntil bounds the retries of uncertain sales.
	retryUntil atomic.Int64

	mu sync.Mutex
	// counted holds the sale ids the aggregates must count, with how many
	// times (more than once only for a resend past the dedup window).
	counted map[string]int
	// refused holds the sale ids answered Sale-Recorded: no, with the
	// answer.
	refused map[string]string
	calls   int // RecordSale calls made
	// uncertain counts calls answered Sale-Recorded: unknown, each retried.
	uncertain int
	// resent counts acknowledged resends of a sale within the dedup
	// window: copies that must not be counted.
	resent int
	// failedCodes counts failed calls by code.
	failedCodes map[connect.Code]int
	// slowestFailure is the longest a failed call took.
	slowestFailure time.Duration
	// unanswered counts failed calls no api answered (failover).
	unanswered int
	// failures holds every failed call an api answered, in order.
	failures []failure
}

// failure is one failed call an api answered: when it started, how long
// it took, its code and its Sale-Recorded.
type failure struct {
	start    time.Time
	took     time.Duration
	code     connect.Code
	recorded string
}

// startLoad starts the clients; stop ends them.
func startLoad(t *testing.T, s *stack, seed uint64, opts loadOptions) *load {
	t.Helper()
	l := &load{
		t: t, s: s, gen: newSaleGen(seed), tr: newTruth(), opts: opts,
		counted: map[string]int{}, refused: map[string]string{}, failedCodes: map[connect.Code]int{},
		start: time.Now(),
	}
	if f := opts.from; f != nil {
		f.mu.Lock()
		l.tr, l.counted, l.refused, l.resent = f.tr, f.counted, f.refused, f.resent
		f.mu.Unlock()
	}
	l.retryUntil.Store(time.Now().Add(time.Hour).UnixNano())
	cs := callers(s)
	l.warmUp(cs[0])
	for i := range opts.clients {
		c := cs[i%len(cs)]
		l.wg.Go(func() {
			for n := 0; !l.stopped.Load(); n++ {
				sale := l.gen.next()
				if i < opts.clientIDs {
					sale.SaleId = fmt.Sprintf("c%d-%d-%s", i, n, randomID())
				}
				l.send(c, sale)
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

// warmUp records one sale, retrying it with the same sale_id until it is
// acknowledged: a broker that has just started may need seconds to create
// the topic, elect leaders and hand out a producer id, and the load after
// it expects every call to succeed. The dedup window counts the sale once
// however many attempts were written.
func (l *load) warmUp(c caller) {
	l.t.Helper()
	sale := l.gen.next()
	sale.SaleId = "warmup-" + randomID()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		id, err := c.record(ctx, sale)
		cancel()
		l.mu.Lock()
		l.calls++
		l.mu.Unlock()
		if err == nil {
			l.mu.Lock()
			l.counted[id]++
			l.mu.Unlock()
			l.tr.acked(sale, c.name)
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("warm-up RecordSale never succeeded within 90s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// send records one sale. An uncertain outcome is retried with the same
// sale_id, in the background, until it is acknowledged.
func (l *load) send(c caller, sale *salesv1.Sale) { l.attempt(c, sale, false) }

// sendUncertain retries a sale whose outcome was uncertain until it is
// acknowledged, whatever the retries are answered.
func (l *load) sendUncertain(c caller, sale *salesv1.Sale) { l.attempt(c, sale, true) }

func (l *load) attempt(c caller, sale *salesv1.Sale, uncertain bool) {
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		id, err := c.record(ctx, sale)
		cancel()
		took := time.Since(start)
		l.mu.Lock()
		l.calls++
		l.mu.Unlock()
		if err == nil {
			l.mu.Lock()
			l.counted[id]++
			l.mu.Unlock()
			l.tr.acked(sale, c.name)
			if l.opts.afterAck != nil {
				l.opts.afterAck(l, c, sale, id)
			}
			return
		}
		var ce *connect.Error
		if !l.opts.tolerate || !errors.As(err, &ce) {
			l.t.Errorf("RecordSale(%s) via %s = %v, want it acknowledged", sale.GetProductId(), c.name, err)
			l.stopped.Store(true)
			return
		}
		recorded, id := ce.Meta().Get("Sale-Recorded"), ce.Meta().Get("Sale-Id")
		l.mu.Lock()
		l.failedCodes[ce.Code()]++
		l.slowestFailure = max(l.slowestFailure, took)
		if recorded != "" {
			l.failures = append(l.failures, failure{start: start, took: took, code: ce.Code(), recorded: recorded})
		}
		l.mu.Unlock()
		switch {
		case recorded == "no" && id != "" && uncertain:
			// This attempt was not written, but an earlier one may
			// have been: only an acknowledgement settles it.
		case recorded == "no" && id != "":
			l.mu.Lock()
			l.refused[id] = fmt.Sprintf("%v after %v", err, took.Round(time.Millisecond))
			l.mu.Unlock()
			// Dropped: the client moves on to another sale, after a
			// pause rather than hammering an api that just said no.
			time.Sleep(50 * time.Millisecond)
			return
		case recorded == "unknown" && id != "" && !uncertain:
			l.mu.Lock()
			l.uncertain++
			l.mu.Unlock()
			// The client keeps the sale in its retry queue and goes
			// on with new sales, so that calls keep arriving during an
			// outage.
			retry := proto.Clone(sale).(*salesv1.Sale)
			retry.SaleId = id
			if l.opts.failover != nil {
				c = l.opts.failover(c)
			}
			l.wg.Go(func() { l.sendUncertain(c, retry) })
			return
		case recorded == "unknown" && id != "":
		case recorded == "" && l.opts.failover != nil && sale.GetSaleId() != "":
			// No api answered: only a refused connection, to a replica
			// that is gone, is a client's to retry elsewhere.
			if !errors.Is(err, syscall.ECONNREFUSED) {
				l.t.Errorf("RecordSale via %s replica %d = %v with no Sale-Recorded, want every call an api took answered", c.name, c.replica, err)
			}
			l.mu.Lock()
			l.unanswered++
			l.mu.Unlock()
			uncertain = true
		default:
			l.t.Errorf("RecordSale via %s = %v with Sale-Recorded %q, Sale-Id %q, want no or unknown and the sale's id", c.name, err, recorded, id)
			l.stopped.Store(true)
			return
		}
		if time.Now().UnixNano() > l.retryUntil.Load() {
			l.t.Errorf("sale %s still not acknowledged when the load's retries ran out: %v", sale.GetSaleId(), err)
			return
		}
		if l.opts.failover != nil {
			c = l.opts.failover(c)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// resend sends an acknowledged sale again after delay, as a client whose
// acknowledgement was lost would, and books it: within the dedup window a
// copy is not counted; past it, it is counted again.
func (l *load) resend(c caller, sale *salesv1.Sale, id string, delay time.Duration, pastWindow bool) {
	again := proto.Clone(sale).(*salesv1.Sale)
	again.SaleId = id
	l.wg.Go(func() {
		time.Sleep(delay)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		got, err := c.record(ctx, again)
		cancel()
		l.mu.Lock()
		l.calls++
		l.mu.Unlock()
		if err != nil || got != id {
			l.t.Errorf("RecordSale(resend of %s) via %s = %q, %v, want acknowledged with the same sale_id", id, c.name, got, err)
			return
		}
		l.mu.Lock()
		if pastWindow {
			l.counted[id]++
		} else {
			l.resent++
		}
		l.mu.Unlock()
		if pastWindow {
			l.tr.acked(again, c.name)
		}
	})
}

// stop ends the load: no new sales, then the pending retries and resends
// finish (retries give up after two minutes).
func (l *load) stop() {
	if l.stopped.Swap(true) {
		return
	}
	l.elapsed = time.Since(l.start)
	l.retryUntil.Store(time.Now().Add(2 * time.Minute).UnixNano())
	l.wg.Wait()
}

// describe summarizes the load for the results table.
func (l *load) describe() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d clients (gRPC, Connect proto, Connect JSON), %s, %d calls (%.0f/s)",
		l.opts.clients, l.elapsed.Round(100*time.Millisecond), l.calls, float64(l.calls)/l.elapsed.Seconds())
}

// audit checks the outcome exactly, sale by sale, once the aggregates
// equal the ground truth (waitForTruth), and logs the scenario's row of the
// results table (docs/reliability.md):
//   - every acknowledged sale_id is in the topic, and no refused one is;
//   - the valid sale records in the topic, less the copies the aggregator
//     dropped as duplicates, are exactly the sales counted;
//   - the dropped copies are exactly the resends within the window plus the
//     extra copies that uncertain calls left in the topic.
func (l *load) audit(ctx context.Context, scenario, faults string) {
	t, s := l.t, l.s
	t.Helper()
	l.stop()
	// Wait as waitForTruth does, but on a mismatch explain it sale by sale
	// before failing.
	converged := waitSummary(ctx, t, s, l.tr, 90*time.Second)
	if converged {
		checkValkey(ctx, t, s, l.tr)
	}

	records := readTopic(ctx, t, s.kafka, s.topic)
	inTopic := map[string]int{}
	valid := 0
	for _, r := range records {
		var sale salesv1.Sale
		if hasHeader(r.Headers, "e2e-poison", "yes") {
			continue // written straight to the topic by TestFaultPoisonRecords
		}
		if err := proto.Unmarshal(r.Value, &sale); err != nil {
			t.Fatalf("record %s/%d/%d from the api does not decode: %v", r.Topic, r.Partition, r.Offset, err)
		}
		inTopic[sale.GetSaleId()]++
		valid++
	}
	loadDesc := l.describe()
	l.mu.Lock()
	defer l.mu.Unlock()
	var lost, refusedWritten, wantCopies int
	for id, n := range l.counted {
		if inTopic[id] < n {
			lost += n - inTopic[id]
			if lost <= 5 {
				t.Errorf("sale %s was acknowledged %d times but the topic has %d copies", id, n, inTopic[id])
			}
		}
		wantCopies += max(inTopic[id]-n, 0)
	}
	for id, answer := range l.refused {
		if inTopic[id] > 0 {
			refusedWritten++
			t.Errorf("sale %s was answered Sale-Recorded: no (%s), but the topic has it", id, answer)
		}
	}
	counted := getSummaryJSON(ctx, t, s).GetSales()
	dups := s.totalsField(ctx, keys.FieldDuplicates)
	acked := l.tr.count()
	if int64(valid)-dups != counted {
		t.Errorf("valid sales in the topic (%d) less duplicates dropped (%d) = %d, want the %d counted", valid, dups, int64(valid)-dups, counted)
	}
	if dups != int64(wantCopies) {
		t.Errorf("%stotals duplicates = %d, want %d (%d resends within the window, %d extra copies of uncertain calls)",
			s.prefix, dups, wantCopies, l.resent, wantCopies-l.resent)
	}
	if lost > 0 || refusedWritten > 0 {
		t.Errorf("%d acknowledged sales missing from the topic, %d refused ones in it", lost, refusedWritten)
	}
	unknown := 0
	for id, n := range inTopic {
		if _, refused := l.refused[id]; !refused && l.counted[id] == 0 {
			unknown++
			if unknown <= 5 {
				t.Errorf("sale %s is in the topic %d times but no call was answered about it", id, n)
			}
		}
	}
	if !converged {
		t.Errorf("GetSummary never matched the %d acknowledged sales (see above); %d ids in the topic unaccounted for", l.tr.count(), unknown)
	}
	lostSales, dupSales := max(acked-counted, 0)+int64(lost), max(counted-acked, 0)
	var failed []string
	for code, n := range l.failedCodes {
		failed = append(failed, fmt.Sprintf("%d %s", n, code))
	}
	notes := fmt.Sprintf("%d valid records in the topic; %d copies dropped as duplicates", valid, dups)
	if len(failed) > 0 {
		notes += fmt.Sprintf("; failed calls: %s (slowest %v), %d refused (Sale-Recorded: no), %d uncertain (retried with the same sale_id)",
			strings.Join(failed, ", "), l.slowestFailure.Round(time.Millisecond), len(l.refused), l.uncertain)
	}
	if l.resent > 0 {
		notes += fmt.Sprintf("; %d resends acknowledged within the window", l.resent)
	}
	t.Logf("RESULT | %s | %s | %s | %d | %d | %d | %d | %s", scenario, loadDesc, faults, acked, counted, lostSales, dupSales, notes)
}

func hasHeader(headers []kgo.RecordHeader, key, value string) bool {
	for _, h := range headers {
		if h.Key == key && string(h.Value) == value {
			return true
		}
	}
	return false
}

// sleepRandom sleeps between lo and hi.
func sleepRandom(rng *rand.Rand, lo, hi time.Duration) {
	time.Sleep(lo + time.Duration(rng.Int64N(int64(hi-lo)+1)))
}

// waitSummary polls GetSummary until it equals the ground truth exactly, and
// reports whether it did within timeout.
func waitSummary(ctx context.Context, t *testing.T, s *stack, tr *truth, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		diff := summaryDiff(getSummaryJSON(ctx, t, s), tr)
		if diff == "" {
			return true
		}
		if diff != last {
			t.Logf("waiting for the aggregates: %s", diff)
			last = diff
		}
		if time.Now().After(deadline) {
			t.Errorf("GetSummary never matched the %d acknowledged sales: %s", tr.count(), diff)
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}
