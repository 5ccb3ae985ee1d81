package ingest

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// TestCallerNeverReachesOtherRecords: a caller's deadline or cancellation
// ends its own wait and nothing else. Its record keeps the server's
// deadline, so it does not fail the records of other callers queued behind
// it on the same partition, and it is itself written; the caller is told it
// may have been. It runs on virtual time (synctest): the caller leaves at
// 50ms exactly, and synctest.Wait lets franz-go act on that before the
// broker answers again.
func TestCallerNeverReachesOtherRecords(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// leave ends the hostile call's context while its record waits.
		leave func(ctx context.Context) (context.Context, context.CancelFunc)
		want  error
	}{
		{"deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 50*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancellation", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t)
				p := newProducer(t, c, Config{ProduceTimeout: neverTimeout})
				warmUp(t, p)
				before := written(t, c)
				release := make(chan struct{})
				sleepProduce(c, release)

				// Every sale is for one product, so one partition: the first
				// is held in flight by the broker, the others queue behind it
				// in franz-go's buffer, the hostile one first.
				hot := func() *salesv1.Sale {
					s := testSale(t)
					s.ProductId = "HOT"
					return s
				}
				polite := make(chan error, 3)
				record := func() { polite <- p.Record(context.Background(), hot()) }
				buffered := func(n int64) {
					t.Helper()
					synctest.Wait()
					if got := p.Buffered(); got != n {
						t.Fatalf("Buffered() = %d, want %d", got, n)
					}
				}
				go record()
				buffered(1)
				ctx, cancel := tt.leave(context.Background())
				defer cancel()
				hostile := make(chan error, 1)
				go func() { hostile <- p.Record(ctx, hot()) }()
				buffered(2)
				go record()
				go record()
				buffered(4)

				err := <-hostile
				var se *SaleError
				if !errors.Is(err, tt.want) || !errors.As(err, &se) || se.Unwritten {
					t.Errorf("Record() whose caller left = %v, want %v, a SaleError that may have been written", err, tt.want)
				}
				// franz-go has done all it would with a record whose
				// context is done before the broker answers again.
				synctest.Wait()
				close(release)
				for range 3 {
					if err := <-polite; err != nil {
						t.Errorf("Record() queued behind a caller that left = %v, want nil", err)
					}
				}
				// The hostile sale was written too: it kept the server's
				// deadline.
				synctest.Wait()
				if got, want := written(t, c), before+4; got != want {
					t.Errorf("topic holds %d records, want %d: the sale of the caller that left is written as well", got, want)
				}
			})
		})
	}
}

// TestCallerGoneBeforeProduce: a call whose caller has already left is not
// produced at all, and its sale is reported as certainly not written.
func TestCallerGoneBeforeProduce(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	p := newProducer(t, c, Config{})
	warmUp(t, p)
	before := written(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var se *SaleError
	if err := p.Record(ctx, testSale(t)); !errors.Is(err, context.Canceled) || !errors.As(err, &se) || !se.Unwritten {
		t.Errorf("Record() with a done context = %v, want context.Canceled, certainly not written", err)
	}
	for i, err := range p.RecordAll(ctx, []*salesv1.Sale{testSale(t), testSale(t)}) {
		if !errors.Is(err, context.Canceled) || !errors.As(err, &se) || !se.Unwritten {
			t.Errorf("RecordAll()[%d] with a done context = %v, want context.Canceled, certainly not written", i, err)
		}
	}
	if got := written(t, c); got != before {
		t.Errorf("topic holds %d records, want %d", got, before)
	}
}
