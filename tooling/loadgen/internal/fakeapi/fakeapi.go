// Package fakeapi is a stand-in for the api in the load generator's tests: a
// real HTTP server speaking every protocol the api speaks (HTTP/1.1 and h2c
// on one port), which records the sales it receives and can fail or slow
// down on demand.
package fakeapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	legacypb "blackfriday.local/gen/blackfriday"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// Received is a sale as the server saw it, with the protocol it came by.
type Received struct {
	Sale      *salesv1.Sale
	HTTPMajor int
}

// Server is a fake api.
type Server struct {
	salesv1connect.UnimplementedSalesServiceHandler
	URL string

	srv *httptest.Server

	mu       sync.Mutex
	received []Received
	// Delay is added to every call.
	Delay time.Duration
	// Fail, when it returns a code, fails the sale with it (in a batch,
	// that sale only).
	Fail func(*salesv1.Sale) connect.Code
	// ConnCalls, when positive, asks a client to leave each connection
	// once it has carried this many calls, as the api does at
	// MAX_CONNECTION_AGE: answers then say "Connection: close" (a GOAWAY
	// over HTTP/2). Set it before the first call.
	ConnCalls int64
}

// New starts a fake api; it stops when the test ends.
func New(tb interface {
	Cleanup(func())
}) *Server {
	s := &Server{}
	mux := http.NewServeMux()
	mux.Handle(salesv1connect.NewSalesServiceHandler(s))
	mux.Handle(blackfridayconnect.NewProductSaleServiceHandler(legacy{s}))
	mux.HandleFunc("POST /venta", s.venta)
	// Connect hides the request from handlers: keep its HTTP version in
	// the context.
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls, ok := r.Context().Value(connCallsKey{}).(*atomic.Int64); ok && s.ConnCalls > 0 && calls.Add(1) >= s.ConnCalls {
			w.Header().Set("Connection", "close")
		}
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), majorKey{}, r.ProtoMajor)))
	}))
	s.srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connCallsKey{}, new(atomic.Int64))
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	s.srv.Config.Protocols = p
	s.srv.Start()
	s.URL = s.srv.URL
	tb.Cleanup(s.srv.Close)
	return s
}

// Received returns the sales received so far.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

func (s *Server) take(ctx context.Context, sale *salesv1.Sale, major int) connect.Code {
	if s.Delay > 0 {
		select {
		case <-time.After(s.Delay):
		case <-ctx.Done():
			return connect.CodeDeadlineExceeded
		}
	}
	if s.Fail != nil {
		if code := s.Fail(sale); code != 0 {
			return code
		}
	}
	s.mu.Lock()
	s.received = append(s.received, Received{Sale: sale, HTTPMajor: major})
	s.mu.Unlock()
	return 0
}

func major(ctx context.Context) int {
	if v, ok := ctx.Value(majorKey{}).(int); ok {
		return v
	}
	return 0
}

type majorKey struct{}

// connCallsKey keys the calls a connection carried.
type connCallsKey struct{}

// recorded is the api's Sale-Recorded answer to a sale that failed with
// code: "no" when it was turned away before Kafka, "unknown" otherwise.
func recorded(code connect.Code) string {
	if code == connect.CodeResourceExhausted || code == connect.CodeInvalidArgument {
		return "no"
	}
	return "unknown"
}

// RecordSale takes one sale.
func (s *Server) RecordSale(ctx context.Context, req *salesv1.RecordSaleRequest) (*salesv1.RecordSaleResponse, error) {
	if code := s.take(ctx, req.GetSale(), major(ctx)); code != 0 {
		err := connect.NewError(code, errors.New("fake failure"))
		err.Meta().Set("Sale-Recorded", recorded(code))
		return nil, err
	}
	return &salesv1.RecordSaleResponse{SaleId: "fake-id"}, nil
}

// RecordSales takes a batch.
func (s *Server) RecordSales(ctx context.Context, req *salesv1.RecordSalesRequest) (*salesv1.RecordSalesResponse, error) {
	resp := &salesv1.RecordSalesResponse{}
	for _, sale := range req.GetSales() {
		r := &salesv1.SaleResult{SaleId: "fake-id"}
		if code := s.take(ctx, sale, major(ctx)); code != 0 {
			r.ErrorCode = code.String()
			resp.Failed++
		} else {
			resp.Accepted++
		}
		resp.Results = append(resp.Results, r)
	}
	if resp.Accepted == 0 {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("fake failure of every sale"))
	}
	return resp, nil
}

type legacy struct{ s *Server }

func (l legacy) ProcesarVenta(ctx context.Context, req *legacypb.ProductSaleRequest) (*legacypb.ProductSaleResponse, error) {
	sale := &salesv1.Sale{
		Category:   salesv1.Category(req.GetCategoria()),
		ProductId:  req.GetProductoId(),
		PriceCents: int64(math.RoundToEven(req.GetPrecio() * 100)),
		Quantity:   req.GetCantidadVendida(),
	}
	if code := l.s.take(ctx, sale, major(ctx)); code != 0 {
		return nil, connect.NewError(code, errors.New("fake failure"))
	}
	return &legacypb.ProductSaleResponse{Estado: "OK"}, nil
}

var legacyCategories = map[string]salesv1.Category{
	"electronica": salesv1.Category_CATEGORY_ELECTRONICS,
	"ropa":        salesv1.Category_CATEGORY_CLOTHING,
	"hogar":       salesv1.Category_CATEGORY_HOME,
	"belleza":     salesv1.Category_CATEGORY_BEAUTY,
}

func (s *Server) venta(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Categoria string  `json:"categoria"`
		Producto  string  `json:"producto_id"`
		Precio    float64 `json:"precio"`
		Cantidad  int32   `json:"cantidad_vendida"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"error":"invalid_argument"}`, http.StatusBadRequest)
		return
	}
	sale := &salesv1.Sale{
		Category:   legacyCategories[strings.ToLower(body.Categoria)],
		ProductId:  body.Producto,
		PriceCents: int64(math.RoundToEven(body.Precio * 100)),
		Quantity:   body.Cantidad,
	}
	w.Header().Set("Content-Type", "application/json")
	if code := s.take(r.Context(), sale, r.ProtoMajor); code != 0 {
		w.Header().Set("Sale-Recorded", recorded(code))
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"` + code.String() + `","message":"fake failure"}`))
		return
	}
	_, _ = w.Write([]byte(`{"estado":"OK","sale_id":"fake-id"}`))
}
