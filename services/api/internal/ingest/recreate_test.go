package ingest

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TestRecordAfterTopicRecreated: once the sales topic is deleted and
// created again, the producer writes to the new topic without a restart,
// after at most a few sales refused as not written. It runs on virtual
// time (synctest).
func TestRecordAfterTopicRecreated(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		p := newProducer(t, c, Config{ProduceTimeout: time.Second})
		warmUp(t, p)

		cl := c.client(t)
		defer cl.Close()
		adm := kadm.NewClient(cl)
		ctx := context.Background()
		if _, err := adm.DeleteTopics(ctx, topic); err != nil {
			t.Fatalf("DeleteTopics: %v", err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err := adm.CreateTopics(ctx, 6, 1, nil, topic)
			if err == nil {
				err = resp[topic].Err
			}
			if err == nil {
				break
			}
			if !errors.Is(err, kerr.TopicAlreadyExists) || time.Now().After(deadline) {
				t.Fatalf("CreateTopics: %v", err)
			}
		}

		failed := 0
		for deadline := time.Now().Add(neverTimeout); ; failed++ {
			err := p.Record(ctx, testSale(t))
			if err == nil {
				break
			}
			var se *SaleError
			if !errors.As(err, &se) || !se.Unwritten {
				t.Errorf("Record() on the recreated topic = %v, want a sale certainly not written", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("Record() never succeeded on the recreated topic (%d failures): %v", failed, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("%d sales refused before the producer wrote to the recreated topic", failed)
		if got := written(t, c); got != 1 {
			t.Errorf("the recreated topic holds %d records, want 1", got)
		}
	})
}
