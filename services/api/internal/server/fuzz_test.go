package server

// Fuzz targets for the ingest edge: Connect JSON and Connect binary bodies
// through the real handler path in process (admission, codecs, interceptors,
// protovalidate, the service), with a recorder in place of Kafka. Seed
// corpora live in testdata/fuzz/; make fuzz-api-short runs each target
// briefly (see docs/security.md for what they check and what they found).

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// capture remembers the sales it is given and acknowledges them.
type capture struct {
	mu    sync.Mutex
	sales []*salesv1.Sale
}

func (c *capture) Record(ctx context.Context, s *salesv1.Sale) error {
	return c.RecordAll(ctx, []*salesv1.Sale{s})[0]
}

func (c *capture) RecordAll(_ context.Context, sales []*salesv1.Sale) []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range sales {
		c.sales = append(c.sales, proto.Clone(s).(*salesv1.Sale))
	}
	return make([]error, len(sales))
}

func (c *capture) take() []*salesv1.Sale {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.sales
	c.sales = nil
	return out
}

// fuzzTarget is the server's whole handler with a capturing recorder.
type fuzzTarget struct {
	handler   http.Handler
	rec       *capture
	validator protovalidate.Validator
}

func newFuzzTarget(tb testing.TB) *fuzzTarget {
	tb.Helper()
	v, err := protovalidate.New()
	if err != nil {
		tb.Fatal(err)
	}
	rec := &capture{}
	srv := New(Config{MaxRequestBytes: 64 << 10, ProduceTimeout: time.Second}, Deps{
		Recorder: rec, Analytics: fakeAnalytics{}, Validator: v,
		Kafka: pinger{}, Valkey: pinger{}, Logger: testLogger(),
	})
	return &fuzzTarget{handler: srv.Handler(), rec: rec, validator: v}
}

// post sends body to RecordSale with contentType and returns the answer and
// the sales recorded.
func (f *fuzzTarget) post(contentType string, body []byte) (*httptest.ResponseRecorder, []*salesv1.Sale) {
	req := httptest.NewRequest(http.MethodPost, salesv1connect.SalesServiceRecordSaleProcedure, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, req)
	return w, f.rec.take()
}

// check holds for every answer: a success recorded exactly one valid sale,
// without unknown fields, and named its id; a failure recorded nothing and
// is a client error in Connect's JSON shape, never internal (which is what
// a recovered panic answers).
func (f *fuzzTarget) check(t *testing.T, w *httptest.ResponseRecorder, sales []*salesv1.Sale) *salesv1.Sale {
	t.Helper()
	if w.Code != http.StatusOK {
		if len(sales) != 0 {
			t.Fatalf("answer %d %s, but %d sales were recorded", w.Code, w.Body, len(sales))
		}
		var e struct{ Code, Message string }
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("error answer %d %q is not Connect JSON: %v", w.Code, w.Body, err)
		}
		switch e.Code {
		case "invalid_argument", "resource_exhausted", "unimplemented":
		default:
			t.Fatalf("answer %d %s, want a client error", w.Code, w.Body)
		}
		return nil
	}
	if len(sales) != 1 {
		t.Fatalf("answer 200 %s with %d sales recorded, want 1", w.Body, len(sales))
	}
	sale := sales[0]
	if err := f.validator.Validate(sale); err != nil {
		t.Fatalf("recorded sale %v is invalid: %v", sale, err)
	}
	if len(sale.ProtoReflect().GetUnknown()) != 0 || len(sale.GetSoldAt().ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("recorded sale %v carries unknown fields", sale)
	}
	if sale.GetSaleId() == "" || sale.GetSoldAt() == nil {
		t.Fatalf("recorded sale %v is not stamped", sale)
	}
	var resp salesv1.RecordSaleResponse
	if err := protojson.Unmarshal(w.Body.Bytes(), &resp); err != nil && w.Header().Get("Content-Type") == "application/json" {
		t.Fatalf("answer %s: %v", w.Body, err)
	}
	if revenue := sale.GetPriceCents() * int64(sale.GetQuantity()); revenue <= 0 || revenue > 1e12 {
		t.Fatalf("recorded sale %v has revenue %d, outside (0, 1e12]", sale, revenue)
	}
	return sale
}

// sameSale checks that what was recorded is what the client sent, apart
// from what the server stamps when missing.
func sameSale(t *testing.T, sent, got *salesv1.Sale) {
	t.Helper()
	want := proto.Clone(sent).(*salesv1.Sale)
	if want.GetSaleId() == "" {
		want.SaleId = got.GetSaleId()
	}
	if want.GetSoldAt() == nil {
		want.SoldAt = got.GetSoldAt()
	}
	if !proto.Equal(want, got) {
		t.Fatalf("recorded %v, want what was sent: %v", got, want)
	}
}

var fuzzSeeds = [][]byte{
	[]byte(`{"sale":{"category":"CATEGORY_ELECTRONICS","productId":"P1","priceCents":"19999","quantity":2}}`),
	[]byte(`{"sale":{"category":1,"product_id":"P1","price_cents":1,"quantity":10000,"saleId":"s-1","soldAt":"2025-11-28T10:00:00.5Z"}}`),
	[]byte(`{"sale":{"category":"CATEGORY_BEAUTY","productId":"B.9:x_y-z","priceCents":100000000,"quantity":1}}`),
	[]byte(`{"sale":{"category":"CATEGORY_HOME","productId":"P1","priceCents":"1e3","quantity":1.0}}`),
	[]byte(`{"sale":{"category":"CATEGORY_HOME","productId":"P1\n","priceCents":1,"quantity":1}}`),
	[]byte(`{"sale":{"category":"CATEGORY_HOME","productId":"P1","priceCents":"NaN","quantity":2147483648}}`),
	[]byte(`{"sale":{"saleid":"x","category":"CATEGORY_HOME"}}`),
	[]byte(`{"sale":{"category":"CATEGORY_HOME","productId":"P\ud800","priceCents":1,"quantity":1}}`),
	[]byte(`{"sale":null}`),
	[]byte(`{}`),
	[]byte(`[]`),
}

// FuzzRecordSaleJSON sends arbitrary bytes as a Connect JSON RecordSale.
// Whatever the body, the server answers; a sale is recorded only if the
// body strictly decodes to a valid sale, and then exactly that sale.
func FuzzRecordSaleJSON(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	target := newFuzzTarget(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		w, sales := target.post("application/json", body)
		got := target.check(t, w, sales)
		if got == nil {
			return
		}
		var sent salesv1.RecordSaleRequest
		if err := protojson.Unmarshal(body, &sent); err != nil {
			t.Fatalf("body %q was accepted, but does not decode strictly: %v", body, err)
		}
		sameSale(t, sent.GetSale(), got)
	})
}

// FuzzRecordSaleProto does the same with Connect binary bodies, which also
// exercise the codec's wire checks (unknown fields, 32-bit overflow).
func FuzzRecordSaleProto(f *testing.F) {
	for _, s := range fuzzSeeds {
		var req salesv1.RecordSaleRequest
		if protojson.Unmarshal(s, &req) == nil {
			b, _ := proto.Marshal(&req)
			f.Add(b)
		}
	}
	f.Add([]byte{0x0a, 0x05, 0x20, 0x85, 0x80, 0x80, 0x80, 0x10}) // quantity 2^32+5
	f.Add([]byte{0x0a, 0x02, 0x38, 0x01})                         // unknown field 7
	target := newFuzzTarget(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		w, sales := target.post("application/proto", body)
		got := target.check(t, w, sales)
		if got == nil {
			return
		}
		var sent salesv1.RecordSaleRequest
		if err := proto.Unmarshal(body, &sent); err != nil {
			t.Fatalf("body %x was accepted, but does not decode: %v", body, err)
		}
		if len(sent.ProtoReflect().GetUnknown()) != 0 || len(sent.GetSale().ProtoReflect().GetUnknown()) != 0 ||
			len(sent.GetSale().GetSoldAt().ProtoReflect().GetUnknown()) != 0 {
			t.Fatalf("body %x with unknown fields was accepted", body)
		}
		sameSale(t, sent.GetSale(), got)
	})
}
