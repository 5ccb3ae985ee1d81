package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// offsetsHangBound tells an answer from a hang on a shared, slow machine.
const offsetsHangBound = 90 * time.Second

// TestTopicRecreatedUnderLoad deletes the sales topic and creates it again
// while the api and the aggregator run, as an operator repairing a broken
// topic would. The api writes the new sales to the new topic without a
// restart.
// The new topic's offsets start again at 0, below those Valkey stores: every
// sale acknowledged after the recreation must still be counted, on top of
// those counted before, and the aggregator must log the event at error
// level, count it in bf_aggregator_log_resets_total and answer /readyz 503
// for LOG_RESET_UNREADY before it is ready again (docs/reliability.md).
func TestTopicRecreatedUnderLoad(t *testing.T) {
	const unready = 8 * time.Second
	s := newFaultStack(t)
	s.setEnv("LOG_RESET_UNREADY", unready.String())
	s.startAggregator("aggregator")
	s.startAPI()
	ctx := context.Background()
	d := faultsDuration(t)

	before := startLoad(t, s, 808, loadOptions{clients: 4})
	time.Sleep(d / 2)
	before.stop()
	if !waitSummary(ctx, t, s, before.tr, offsetsHangBound) {
		t.Fatal("the sales before the recreation were not counted")
	}
	if n := s.aggregatorMetric("aggregator", `bf_aggregator_log_resets_total{reason="recreated"}`); n != 0 {
		t.Fatalf(`bf_aggregator_log_resets_total{reason="recreated"} = %v before the recreation, want 0`, n)
	}
	ready := watchReady(t, s, "aggregator")

	// Both services keep running: the api's producer moves to the new
	// topic by itself, the aggregator's consumer too.
	deleted := recreateTopic(ctx, t, s.kafka, s.topic)

	after := startLoad(t, s, 909, loadOptions{clients: 4})
	time.Sleep(d / 2)
	after.stop()
	both := newTruth()
	both.merge(before.tr)
	both.merge(after.tr)
	if !waitSummary(ctx, t, s, both, offsetsHangBound) {
		t.Fatalf("the %d sales acknowledged before and the %d after the recreation were not all counted", before.tr.count(), after.tr.count())
	}
	checkValkey(ctx, t, s, both)

	events := loggedResets(t, s.aggregatorLog("aggregator"), "recreated")
	if len(events) == 0 {
		t.Fatalf("the aggregator logged no error with reason=recreated after the topic was recreated")
	}
	if n := s.aggregatorMetric("aggregator", `bf_aggregator_log_resets_total{reason="recreated"}`); n != float64(len(events)) {
		t.Errorf(`bf_aggregator_log_resets_total{reason="recreated"} = %v, want %d, one per partition logged`, n, len(events))
	}
	first, last := events[0], events[len(events)-1]
	if first.Before(deleted) {
		t.Errorf("a recreation was logged at %v, before the topic was deleted at %v", first, deleted)
	}
	s.waitReady("aggregator", true, offsetsHangBound)
	ready.waitReadySince(t, last.Add(unready))
	samples := ready.stop()
	// Ready() turns false just before each event is logged and stays
	// false until LOG_RESET_UNREADY after the last one. A sample sent after
	// the first line and answered before the window ends was judged within
	// it; the margin is for the moment between turning unready and logging.
	const margin = 50 * time.Millisecond
	notReady, readyAgain := false, false
	for _, smp := range samples {
		within := smp.sent.After(first) && smp.answered.Before(last.Add(unready-margin))
		switch {
		case within && smp.ready:
			t.Errorf("/readyz answered 200 to a request sent %v after the first recreation was logged, want 503 until %v after the last (%v)",
				smp.sent.Sub(first), unready, last)
		case within:
			notReady = true
		case smp.ready && smp.sent.After(last.Add(unready)):
			readyAgain = true
		}
	}
	if !notReady || !readyAgain {
		t.Errorf("/readyz seen 503 after the recreation = %v, 200 again after %v = %v; want both", notReady, unready, readyAgain)
	}
	t.Logf("topic deleted at %v and created again; %d partitions logged (first %v later); %d sales before and %d after, all counted; /readyz 503 from %v to at least %v",
		deleted.Format(time.RFC3339Nano), len(events), first.Sub(deleted).Round(time.Millisecond),
		before.tr.count(), after.tr.count(), first.Format(time.StampMilli), last.Add(unready).Format(time.StampMilli))
}

// recreateTopic deletes topic and creates it again with 6 partitions, as
// kafka-topics.sh --delete and --create would. It returns, once the new
// topic exists, when the deletion was asked for.
func recreateTopic(ctx context.Context, t *testing.T, brokers, topic string) time.Time {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	before, err := adm.ListTopics(ctx, topic)
	if err != nil || before[topic].Err != nil {
		t.Fatalf("describe %s: %v, %v", topic, err, before[topic].Err)
	}
	deleted := time.Now()
	resp, err := adm.DeleteTopics(ctx, topic)
	if err == nil {
		err = resp[topic].Err
	}
	if err != nil {
		t.Fatalf("delete topic %s: %v", topic, err)
	}
	// Deletion completes in the background: creating the topic again
	// fails until it has.
	for deadline := time.Now().Add(offsetsHangBound); ; time.Sleep(200 * time.Millisecond) {
		created, err := adm.CreateTopics(ctx, 6, -1, nil, topic)
		if err == nil {
			err = created[topic].Err
		}
		if err == nil {
			break
		}
		if !errors.Is(err, kerr.TopicAlreadyExists) || time.Now().After(deadline) {
			t.Fatalf("create topic %s again: %v", topic, err)
		}
	}
	// A new client each time: kadm answers from metadata cached for
	// seconds. The broker learns of the new topic a moment after the
	// controller created it, and says it does not know it until then.
	var now kadm.TopicDetails
	for deadline := time.Now().Add(offsetsHangBound); ; time.Sleep(200 * time.Millisecond) {
		fresh, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
		if err != nil {
			t.Fatal(err)
		}
		now, err = kadm.NewClient(fresh).ListTopics(ctx, topic)
		fresh.Close()
		if err == nil {
			err = now[topic].Err
		}
		if err == nil {
			break
		}
		if !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().After(deadline) {
			t.Fatalf("describe %s after creating it again: %v", topic, err)
		}
	}
	if now[topic].ID == before[topic].ID {
		t.Fatalf("topic %s kept its ID %v across the recreation", topic, now[topic].ID)
	}
	t.Logf("topic %s recreated: ID %v, was %v", topic, now[topic].ID, before[topic].ID)
	return deleted
}

// loggedResets returns when the aggregator logged each error about a log
// reset with reason, in order.
func loggedResets(t *testing.T, log, reason string) []time.Time {
	t.Helper()
	var out []time.Time
	for line := range strings.SplitSeq(log, "\n") {
		var rec struct {
			Time   time.Time `json:"time"`
			Level  string    `json:"level"`
			Reason string    `json:"reason"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Level != "ERROR" || rec.Reason != reason {
			continue
		}
		out = append(out, rec.Time)
	}
	return out
}

// readySample is one answer of /readyz, with when its request was sent
// and when the answer came: the aggregator judged it in between.
type readySample struct {
	sent, answered time.Time
	ready          bool
}

// readyWatch polls an aggregator's /readyz until stopped.
type readyWatch struct {
	mu      sync.Mutex
	samples []readySample
	quit    chan struct{}
	done    chan struct{}
}

// watchReady polls the /readyz of the aggregator name every 50 ms, in a
// goroutine that ends with stop or the test.
func watchReady(t *testing.T, s *stack, name string) *readyWatch {
	t.Helper()
	s.mu.Lock()
	url := "http://" + s.aggAddrs[name] + "/readyz"
	s.mu.Unlock()
	w := &readyWatch{quit: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(w.done)
		for {
			sent := time.Now()
			resp, err := client.Get(url)
			ready := err == nil && resp.StatusCode == http.StatusOK
			if resp != nil {
				resp.Body.Close()
			}
			w.mu.Lock()
			w.samples = append(w.samples, readySample{sent: sent, answered: time.Now(), ready: ready})
			w.mu.Unlock()
			select {
			case <-w.quit:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

// waitReadySince waits until a sample sent after since answered 200.
func (w *readyWatch) waitReadySince(t *testing.T, since time.Time) {
	t.Helper()
	for deadline := time.Now().Add(offsetsHangBound); ; time.Sleep(50 * time.Millisecond) {
		w.mu.Lock()
		ok := slices.ContainsFunc(w.samples, func(s readySample) bool { return s.ready && s.sent.After(since) })
		w.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /readyz sample answered 200 after %v within %v", since, offsetsHangBound)
		}
	}
}

// stop ends the polling and returns the samples.
func (w *readyWatch) stop() []readySample {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.samples
}

// merge adds o's sales to tr.
func (tr *truth) merge(o *truth) {
	o.mu.Lock()
	defer o.mu.Unlock()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.total.merge(o.total)
	for c, a := range o.cats {
		if tr.cats[c] == nil {
			tr.cats[c] = &agg{}
			tr.catProds[c] = map[string]int64{}
		}
		tr.cats[c].merge(*a)
		for p, n := range o.catProds[c] {
			tr.catProds[c][p] += n
		}
	}
	for p, n := range o.products {
		tr.products[p] += n
	}
	for p, n := range o.ingest {
		tr.ingest[p] += n
	}
}

func (a *agg) merge(b agg) {
	if b.sales == 0 {
		return
	}
	if a.sales == 0 {
		*a = b
		return
	}
	a.sales += b.sales
	a.units += b.units
	a.revenue += b.revenue
	a.priceSum += b.priceSum
	a.min = min(a.min, b.min)
	a.max = max(a.max, b.max)
}
