package telemetrytest

import (
	"strings"
	"testing"
	"time"
)

func TestWaterfall(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_800_000_000, 0)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	spans := []Span{
		{Service: "b", TraceID: "t1", SpanID: "c", ParentID: "a", Name: "child", Start: at(1), End: at(3)},
		{Service: "a", TraceID: "t1", SpanID: "a", Name: "root", Start: at(0), End: at(4)},
		{Service: "b", TraceID: "t1", SpanID: "d", ParentID: "c", Name: "grandchild", Start: at(1.5), End: at(2)},
		{Service: "b", TraceID: "t2", SpanID: "e", ParentID: "gone", Name: "orphan", Start: at(10), End: at(11),
			Links: []Link{{TraceID: "t1", SpanID: "c"}}},
	}
	got := Waterfall(spans)
	for _, want := range []string{
		"trace t1\na                        root                                                     0.00ms     4.00ms\n" +
			"b                          child                                                  1.00ms     2.00ms\n" +
			"b                            grandchild                                           1.50ms     0.50ms\n",
		"trace t2 (its parent gone was not received)\nb                        orphan ",
		"links to trace t1 span c",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Waterfall() =\n%s\nwant it to hold\n%s", got, want)
		}
	}
}
