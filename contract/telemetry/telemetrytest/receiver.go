// Package telemetrytest is a real OTLP/HTTP trace receiver for tests: it
// decodes the protobuf ExportTraceServiceRequests that the services'
// exporters send (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf) and keeps their
// spans, to be asserted on and printed as a waterfall.
package telemetrytest

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened.
type Span struct {
	// Service is its resource's service.name.
	Service string
	// TraceID, SpanID and ParentID are hex; ParentID is "" for a root.
	TraceID, SpanID, ParentID string
	Name                      string
	Kind                      tracepb.Span_SpanKind
	Start, End                time.Time
	// Links are the span contexts it links to.
	Links []Link
	// Attributes are its attributes, as strings.
	Attributes map[string]string
}

// Link is a span link.
type Link struct{ TraceID, SpanID string }

// Duration is how long the span lasted.
func (s Span) Duration() time.Duration { return s.End.Sub(s.Start) }

// Receiver is an OTLP/HTTP trace receiver on a loopback port.
type Receiver struct {
	srv *http.Server
	url string

	mu    sync.Mutex
	spans []Span
	// requests counts the export requests received, empty ones included.
	requests int
}

// Start starts a receiver that stops when the test ends.
func Start(tb testing.TB) *Receiver {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &Receiver{url: "http://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.export)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.srv.Serve(ln)
	}()
	tb.Cleanup(func() {
		_ = r.srv.Close()
		<-done
	})
	return r
}

// Endpoint is the receiver's base URL, for OTEL_EXPORTER_OTLP_ENDPOINT (the
// exporter adds /v1/traces).
func (r *Receiver) Endpoint() string { return r.url }

// Requests returns how many export requests arrived.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// Wait polls until done accepts the spans received, or fails the test after
// timeout, listing what arrived.
func (r *Receiver) Wait(tb testing.TB, timeout time.Duration, done func([]Span) bool) []Span {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := r.Spans()
		if done(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %v the receiver holds %d spans, not the ones wanted:\n%s", timeout, len(spans), Waterfall(spans))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// export is the OTLP/HTTP traces endpoint: protobuf in, protobuf out.
func (r *Receiver) export(w http.ResponseWriter, req *http.Request) {
	body := io.Reader(req.Body)
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer gz.Close()
		body = gz
	}
	b, err := io.ReadAll(io.LimitReader(body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "want application/x-protobuf, got "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var got []Span
	for _, rs := range msg.GetResourceSpans() {
		service := attributes(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				got = append(got, flatten(service, s))
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	r.requests++
	r.mu.Unlock()
	out, err := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func flatten(service string, s *tracepb.Span) Span {
	out := Span{
		Service:    service,
		TraceID:    hex.EncodeToString(s.GetTraceId()),
		SpanID:     hex.EncodeToString(s.GetSpanId()),
		ParentID:   hex.EncodeToString(s.GetParentSpanId()),
		Name:       s.GetName(),
		Kind:       s.GetKind(),
		Start:      time.Unix(0, int64(s.GetStartTimeUnixNano())),
		End:        time.Unix(0, int64(s.GetEndTimeUnixNano())),
		Attributes: attributes(s.GetAttributes()),
	}
	for _, l := range s.GetLinks() {
		out.Links = append(out.Links, Link{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId())})
	}
	return out
}

func attributes(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = v.GetStringValue()
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = fmt.Sprint(v.GetIntValue())
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = fmt.Sprint(v.GetBoolValue())
		case *commonpb.AnyValue_DoubleValue:
			m[kv.GetKey()] = fmt.Sprint(v.GetDoubleValue())
		default:
			m[kv.GetKey()] = v.String()
		}
	}
	return m
}

// Waterfall renders spans as indented trees, children under their parents
// in start order: for each span its service, its name, when it started after
// the first span of its tree, and how long it lasted. A span whose parent is
// not among spans starts a tree of its own, and its links are listed under
// it.
func Waterfall(spans []Span) string {
	byID := make(map[string]bool, len(spans))
	for _, s := range spans {
		byID[s.SpanID] = true
	}
	children := map[string][]Span{}
	var roots []Span
	for _, s := range spans {
		if s.ParentID != "" && byID[s.ParentID] {
			children[s.ParentID] = append(children[s.ParentID], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b Span) int { return a.Start.Compare(b.Start) }
	slices.SortFunc(roots, byStart)
	var b strings.Builder
	fmt.Fprintf(&b, "%-24s %-52s %10s %10s\n", "service", "span", "start", "duration")
	var walk func(s Span, depth int, origin time.Time)
	walk = func(s Span, depth int, origin time.Time) {
		name := strings.Repeat("  ", depth) + s.Name
		fmt.Fprintf(&b, "%-24s %-52s %10s %10s\n", s.Service, name, ms(s.Start.Sub(origin)), ms(s.Duration()))
		for _, l := range s.Links {
			fmt.Fprintf(&b, "%-24s %s  links to trace %s span %s\n", "", strings.Repeat("  ", depth+1), l.TraceID, l.SpanID)
		}
		kids := children[s.SpanID]
		slices.SortFunc(kids, byStart)
		for _, k := range kids {
			walk(k, depth+1, origin)
		}
	}
	for i, r := range roots {
		if i > 0 {
			b.WriteString("\n")
		}
		note := ""
		if r.ParentID != "" {
			note = " (its parent " + r.ParentID + " was not received)"
		}
		fmt.Fprintf(&b, "trace %s%s\n", r.TraceID, note)
		walk(r, 0, r.Start)
	}
	return b.String()
}

// ms renders d in milliseconds with two decimals.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}
