package e2e

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/contract/keys"
	"blackfriday.local/tooling/stack/kafka"
	"blackfriday.local/tooling/stack/valkey"
)

// dedicatedValkey is a Valkey server of the test's own, in a directory of
// its own, so that the test may stop, kill, wipe or reconfigure it without
// touching the shared one. It is destroyed when the test ends.
type dedicatedValkey struct {
	t *testing.T
	*valkey.Server
}

// startValkey starts a dedicated Valkey configured by cfg.
func startValkey(t *testing.T, cfg valkey.Config) *dedicatedValkey {
	t.Helper()
	services(t) // skip, or fail under CI, like every test needing services
	cfg.Log = t.Output()
	srv, err := valkey.Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	v := &dedicatedValkey{t: t, Server: srv}
	t.Cleanup(func() {
		if err := srv.Destroy(); err != nil {
			t.Errorf("destroy the dedicated Valkey: %v", err)
		}
	})
	v.start()
	return v
}

// start starts the server again, as it was configured.
func (v *dedicatedValkey) start() {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := v.Start(ctx); err != nil {
		v.t.Fatal(err)
	}
}

// stop shuts the server down cleanly.
func (v *dedicatedValkey) stop() {
	v.t.Helper()
	if err := v.Stop(); err != nil {
		v.t.Fatal(err)
	}
}

// kill kills the server with SIGKILL.
func (v *dedicatedValkey) kill() {
	v.t.Helper()
	if err := v.Kill(); err != nil {
		v.t.Fatal(err)
	}
}

// startKafka starts a Kafka cluster of the test's own, made by cfg, and
// destroys it when the test ends.
func startKafka(t *testing.T, cfg kafka.Config) *kafka.Cluster {
	t.Helper()
	services(t) // skip, or fail under CI, like every test needing services
	cfg.Log = t.Output()
	c, err := kafka.Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(); err != nil {
			t.Errorf("destroy the dedicated Kafka: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// useValkey points the stack, and the tests' own reads, at another Valkey.
func (s *stack) useValkey(addr string) {
	s.valkey = addr
	s.setEnv("VALKEY_ADDR", addr)
}

// setEnv replaces (or adds) one variable of the environment every process
// of the stack starts with.
func (s *stack) setEnv(name, value string) {
	for i, kv := range s.env {
		if strings.HasPrefix(kv, name+"=") {
			s.env[i] = name + "=" + value
			return
		}
	}
	s.env = append(s.env, name+"="+value)
}

// readTopic reads every record of topic, from the start of each partition
// to its end offset at the time of the call.
func readTopic(ctx context.Context, t *testing.T, brokers, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	admin, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(brokers, ",")...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("ListEndOffsets(%s) = %v", topic, err)
	}
	want := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", topic, o.Partition, o.Err)
		}
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			start[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d records so far, partitions %v not read to the end: %v", topic, len(out), want, ctx.Err())
		}
		fetches.EachError(func(topic string, p int32, err error) {
			t.Logf("read %s/%d: %v", topic, p, err)
		})
		for _, r := range fetches.Records() {
			if end, ok := want[r.Partition]; ok && r.Offset < end {
				out = append(out, r)
				if r.Offset == end-1 {
					delete(want, r.Partition)
				}
			}
		}
	}
	return out
}

// metricValue finds an unlabelled sample in a Prometheus text exposition.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s = %q: %v", name, v, err)
			}
			return f
		}
	}
	t.Fatalf("metrics lack %s", name)
	return 0
}

// aggregatorMetric scrapes one metric of the running aggregator name.
func (s *stack) aggregatorMetric(name, metric string) float64 {
	s.t.Helper()
	s.mu.Lock()
	addr := s.aggAddrs[name]
	s.mu.Unlock()
	return metricValue(s.t, scrape(s.t, "http://"+addr+"/metrics"), metric)
}

// totalsField reads one field of the totals hash straight from Valkey.
func (s *stack) totalsField(ctx context.Context, field string) int64 {
	s.t.Helper()
	c := s.valkeyClient()
	defer c.Close()
	totals := keys.New(s.prefix).Totals()
	v, err := c.Do(ctx, c.B().Hget().Key(totals).Field(field).Build()).AsInt64()
	if err != nil && !rueidis.IsRedisNil(err) {
		s.t.Fatalf("HGET %s %s: %v", totals, field, err)
	}
	return v
}

// valkeyClient connects to the stack's Valkey as the tests' own user.
func (s *stack) valkeyClient() rueidis.Client {
	s.t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.valkey}, DisableCache: true,
		Username: s.valkeyUser, Password: s.valkeyPassword})
	if err != nil {
		s.t.Fatalf("valkey client: %v", err)
	}
	return c
}

// waitReady waits until the aggregator name's /readyz answers 200 (ready)
// or anything else (not ready).
func (s *stack) waitReady(name string, ready bool, timeout time.Duration) {
	s.t.Helper()
	s.mu.Lock()
	addr := s.aggAddrs[name]
	s.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		got := err == nil && resp.StatusCode == http.StatusOK
		if resp != nil {
			resp.Body.Close()
		}
		if got == ready {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("aggregator %s /readyz ready = %v for %v, want %v", name, got, timeout, ready)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
