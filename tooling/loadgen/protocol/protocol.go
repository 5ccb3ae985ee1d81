// Package protocol holds the load generator's drivers: clients that send
// sales to the api over each protocol it serves, with the generated
// connect-go clients (and plain HTTP for the course's REST API), or, for gRPC
// and Connect JSON, lean hand-written ones (Config.Lean) that cost the
// driver little CPU; all over transports that count the bytes on the wire.
package protocol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"blackfriday.local/contract/record"
	legacypb "blackfriday.local/gen/blackfriday"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/tooling/loadgen/wire"
)

// Name names a way of sending sales.
type Name string

// The protocols, as the -protocol flag spells them.
const (
	// ConnectJSON is Connect unary with JSON over HTTP/1.1.
	ConnectJSON Name = "connect-json"
	// ConnectJSONH2C is Connect unary with JSON over cleartext HTTP/2.
	ConnectJSONH2C Name = "connect-json-h2c"
	// ConnectProto is Connect unary with binary protobuf over HTTP/1.1.
	ConnectProto Name = "connect-proto"
	// GRPC is gRPC over cleartext HTTP/2.
	GRPC Name = "grpc"
	// GRPCGo is gRPC over cleartext HTTP/2 sent by grpc-go's own client,
	// to the api's grpc-go server: grpc-go at both ends.
	GRPCGo Name = "grpc-go"
	// GRPCConnectGo is GRPC to an api that serves native gRPC with
	// connect-go on Go's HTTP/2 server (GRPC_SERVER=connect) instead of
	// grpc-go: the comparison's anchor, the same calls on the other server.
	// Only compare, which starts that api, knows where to send it.
	GRPCConnectGo Name = "grpc-connect-go"
	// GRPCWeb is gRPC-Web (binary) over HTTP/1.1.
	GRPCWeb Name = "grpc-web"
	// LegacyREST is the course's POST /venta with its JSON body, over
	// HTTP/1.1.
	LegacyREST Name = "legacy-rest"
	// LegacyGRPC is the course's ProcesarVenta over gRPC.
	LegacyGRPC Name = "legacy-grpc"
	// Batch is RecordSales over gRPC (DefaultBatch sales per call unless
	// told otherwise).
	Batch Name = "batch"
)

// DefaultBatch is the batch size of the batch protocol.
const DefaultBatch = 500

// Names lists every protocol, in report order.
func Names() []Name {
	return []Name{ConnectJSON, ConnectJSONH2C, ConnectProto, GRPC, GRPCGo, GRPCConnectGo, GRPCWeb, LegacyREST, LegacyGRPC, Batch}
}

// Parse checks a protocol name.
func Parse(s string) (Name, error) {
	for _, n := range Names() {
		if string(n) == s {
			return n, nil
		}
	}
	all := make([]string, 0, len(Names()))
	for _, n := range Names() {
		all = append(all, string(n))
	}
	return "", fmt.Errorf("unknown protocol %q (want one of %s)", s, strings.Join(all, ", "))
}

// HTTP2 reports whether the protocol runs over cleartext HTTP/2 (h2c, prior
// knowledge); the others use HTTP/1.1.
func (n Name) HTTP2() bool {
	switch n {
	case ConnectJSONH2C, GRPC, GRPCGo, GRPCConnectGo, LegacyGRPC, Batch:
		return true
	}
	return false
}

// DefaultH2Conns is the number of HTTP/2 connections a client spreads its
// calls over unless told otherwise: more than one, so that behind a
// Service they reach more than one replica of the api.
const DefaultH2Conns = 8

// Conns is Config.Conns for callers calling at once over n: a connection
// each over HTTP/1.1, which carries one call at a time; h2Conns over
// HTTP/2, which carries many at once.
func (n Name) Conns(callers, h2Conns int) int {
	if n.HTTP2() {
		return h2Conns
	}
	return callers
}

// Legacy reports whether the protocol is one of the course's APIs, which take
// one sale per call.
func (n Name) Legacy() bool { return n == LegacyREST || n == LegacyGRPC }

// Describe says what goes over the wire.
func (n Name) Describe() string {
	switch n {
	case ConnectJSON:
		return "Connect, JSON, HTTP/1.1"
	case ConnectJSONH2C:
		return "Connect, JSON, HTTP/2 (h2c)"
	case ConnectProto:
		return "Connect, protobuf, HTTP/1.1"
	case GRPC:
		return "gRPC, protobuf, HTTP/2 (h2c)"
	case GRPCGo:
		return "gRPC, protobuf, HTTP/2 (h2c), grpc-go's client"
	case GRPCConnectGo:
		return "gRPC, protobuf, HTTP/2 (h2c), served by connect-go (GRPC_SERVER=connect)"
	case GRPCWeb:
		return "gRPC-Web, protobuf, HTTP/1.1"
	case LegacyREST:
		return "course REST POST /venta, JSON, HTTP/1.1"
	case LegacyGRPC:
		return "course gRPC ProcesarVenta, HTTP/2 (h2c)"
	case Batch:
		return "RecordSales batch, gRPC, HTTP/2 (h2c)"
	}
	return string(n)
}

// Config configures a client.
type Config struct {
	// Target is the api's base URL, such as http://127.0.0.1:8080.
	Target string
	// Protocol is the protocol to speak.
	Protocol Name
	// Batch is the number of sales per call: 1 is RecordSale, more is
	// RecordSales (Connect and gRPC protocols only).
	Batch int
	// Conns is, for a protocol over HTTP/1.1, the number of idle
	// connections kept (set it to the concurrency, so that calls reuse
	// their connections); for one over HTTP/2, the number of connections
	// the calls are spread over, in turn, each carrying many at once (see
	// Name.Conns). Several HTTP/2 connections reach several replicas of an
	// api behind a Service, where one would reach only one.
	Conns int
	// DialTimeout bounds connecting.
	DialTimeout time.Duration
	// AcceptGzip lets the server gzip responses, as connect-go clients do
	// by default. Off by default: compressing a 40-byte answer only costs.
	AcceptGzip bool
	// Wire counts the bytes; nil counts into a fresh counter.
	Wire *wire.Counter
	// Token, when set, is sent as a bearer token (Authorization) with
	// every call, for an api that authenticates writes.
	Token string
	// Lean sends GRPC and ConnectJSON calls (one sale each) with
	// hand-written clients instead of connect-go's: gRPC as raw HTTP/2
	// frames, up to 200 streams on each of Conns connections read by one
	// goroutine each, and Connect JSON as raw HTTP/1.1 requests on up to
	// Conns keep-alive connections. Each costs the driver a fraction of
	// what connect-go costs, so that on one small machine the load offered
	// is not capped by the driver's own CPU; and each times its calls on
	// the wire (Reply.Wrote and Reply.Answered).
	Lean bool
}

// Reply is the outcome of one call.
type Reply struct {
	// Code is "ok" or the Connect error code of the call.
	Code string
	// Err is the call's error, nil when Code is "ok".
	Err error
	// Recorded is the api's Sale-Recorded answer to a failed call: "no"
	// when the sale was certainly not written, "unknown" otherwise; empty
	// when the api did not say.
	Recorded string
	// Wrote is when the request was on the wire, and Answered when the
	// answer came off it (before the caller's goroutine ran again). The
	// lean clients know them; zero means unknown: Wrote, that the call
	// may never have been written; Answered, when Send returned.
	Wrote, Answered time.Time
	// ItemCodes, for a RecordSales call that succeeded, holds each sale's
	// code: "" when Kafka acknowledged it. Nil otherwise.
	ItemCodes []string
}

// Acked reports whether sale i of the call was acknowledged.
func (r Reply) Acked(i int) bool {
	if r.Code != "ok" {
		return false
	}
	return r.ItemCodes == nil || r.ItemCodes[i] == ""
}

// NotWritten reports whether a sale that failed with code was certainly not
// written, so the ground truth can leave it out: it was rejected before
// reaching Kafka. After any other failure (a timeout, an unconfirmed write)
// the sale may have been written.
func NotWritten(code string) bool {
	switch code {
	case "invalid_argument", "resource_exhausted", "unimplemented", "failed_precondition", "out_of_range":
		return true
	}
	return false
}

// SaleRecorded is the api's answer header (gRPC trailer, Connect error
// metadata) that says whether a failed sale was written.
const SaleRecorded = "Sale-Recorded"

// Ingest is the protocol the api records the sales of n under: the
// ingest-protocol header of their records, by which the aggregator counts
// them (contract/record).
func (n Name) Ingest() record.Protocol {
	switch n {
	case ConnectJSON, ConnectJSONH2C:
		return record.ProtocolConnectJSON
	case ConnectProto:
		return record.ProtocolConnectProto
	case GRPC, GRPCGo, GRPCConnectGo, Batch:
		return record.ProtocolGRPC
	case GRPCWeb:
		return record.ProtocolGRPCWeb
	case LegacyREST:
		return record.ProtocolLegacyREST
	case LegacyGRPC:
		return record.ProtocolLegacyGRPC
	}
	return record.ProtocolUnknown
}

// Server names what serves n's calls in the api: grpc-go for native gRPC
// (the api's default, GRPC_SERVER=grpc-go), connect-go for the others and
// for the anchor, GRPCConnectGo (GRPC_SERVER=connect).
func (n Name) Server() string {
	switch n {
	case GRPC, GRPCGo, LegacyGRPC, Batch:
		return "grpc-go"
	}
	return "connect-go"
}

// Client sends sales over one protocol.
type Client struct {
	name       Name
	batch      int
	transports []*http.Transport
	wire       *wire.Counter
	send       func(ctx context.Context, sales []*salesv1.Sale) Reply
	// close closes a lean client's connections.
	close func()
}

// New returns a client; it connects lazily.
func New(cfg Config) (*Client, error) {
	if _, err := Parse(string(cfg.Protocol)); err != nil {
		return nil, err
	}
	batch := cfg.Batch
	if batch <= 0 {
		batch = 1
		if cfg.Protocol == Batch {
			batch = DefaultBatch
		}
	}
	if cfg.Protocol.Legacy() && batch != 1 {
		return nil, fmt.Errorf("protocol %s takes one sale per call, not a batch of %d", cfg.Protocol, batch)
	}
	if batch > 1000 {
		return nil, fmt.Errorf("batch of %d sales: RecordSales takes at most 1000", batch)
	}
	counter := cfg.Wire
	if counter == nil {
		counter = wire.NewCounter(cfg.DialTimeout)
	}
	if cfg.Protocol == GRPCGo {
		return newGRPCGo(cfg, batch, counter)
	}
	if cfg.Lean {
		return newLean(cfg, batch, counter)
	}
	// Go's transport puts all of a host's HTTP/2 calls on one connection
	// (until the server's stream limit): each HTTP/2 connection has a
	// transport of its own, and the calls take them in turn.
	transports := 1
	if cfg.Protocol.HTTP2() {
		transports = max(cfg.Conns, 1)
	}
	c := &Client{name: cfg.Protocol, batch: batch, wire: counter}
	sends := make([]func(context.Context, []*salesv1.Sale) Reply, transports)
	for i := range sends {
		tr := newTransport(cfg, counter)
		c.transports = append(c.transports, tr)
		sends[i] = sender(cfg, batch, tr)
	}
	c.send = sends[0]
	if len(sends) > 1 {
		var next atomic.Uint64
		c.send = func(ctx context.Context, sales []*salesv1.Sale) Reply {
			return sends[next.Add(1)%uint64(len(sends))](ctx, sales)
		}
	}
	return c, nil
}

// newTransport returns a transport for cfg's protocol, dialing through the
// wire counter.
func newTransport(cfg Config, counter *wire.Counter) *http.Transport {
	protocols := new(http.Protocols)
	idle := 1
	if cfg.Protocol.HTTP2() {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		protocols.SetHTTP1(true)
		idle = max(cfg.Conns, 1)
	}
	return &http.Transport{
		Protocols:           protocols,
		DialContext:         counter.DialContext,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		// Transparent gzip would add Accept-Encoding to every request;
		// Connect negotiates its own compression.
		DisableCompression: true,
	}
}

// sender returns what sends cfg's calls over tr.
func sender(cfg Config, batch int, tr *http.Transport) func(context.Context, []*salesv1.Sale) Reply {
	var rt http.RoundTripper = tr
	if cfg.Token != "" {
		rt = bearer{rt: tr, value: "Bearer " + cfg.Token}
	}
	hc := &http.Client{Transport: rt}
	target := strings.TrimRight(cfg.Target, "/")

	var opts []connect.ClientOption
	if !cfg.AcceptGzip {
		opts = append(opts, connect.WithAcceptCompression("gzip", nil, nil))
	}
	switch cfg.Protocol {
	case ConnectJSON, ConnectJSONH2C:
		opts = append(opts, connect.WithProtoJSON())
	case GRPC, GRPCConnectGo, LegacyGRPC, Batch:
		opts = append(opts, connect.WithGRPC())
	case GRPCWeb:
		opts = append(opts, connect.WithGRPCWeb())
	}
	switch {
	case cfg.Protocol == LegacyREST:
		return restSender(hc, target+"/venta")
	case cfg.Protocol == LegacyGRPC:
		return legacyGRPCSender(blackfridayconnect.NewProductSaleServiceClient(hc, target, opts...))
	case batch > 1:
		return batchSender(salesv1connect.NewSalesServiceClient(hc, target, opts...))
	default:
		return unarySender(salesv1connect.NewSalesServiceClient(hc, target, opts...))
	}
}

// bearer adds an Authorization header to every request.
type bearer struct {
	rt    http.RoundTripper
	value string
}

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", b.value)
	return b.rt.RoundTrip(req)
}

// Name returns the client's protocol.
func (c *Client) Name() Name { return c.name }

// Batch returns the number of sales per call.
func (c *Client) Batch() int { return c.batch }

// Wire returns the client's byte counter.
func (c *Client) Wire() *wire.Counter { return c.wire }

// Send sends sales in one call (len(sales) must be the client's batch).
func (c *Client) Send(ctx context.Context, sales []*salesv1.Sale) Reply {
	return c.send(ctx, sales)
}

// Close closes the idle connections (a lean client's, all of them).
func (c *Client) Close() {
	if c.close != nil {
		c.close()
		return
	}
	for _, tr := range c.transports {
		tr.CloseIdleConnections()
	}
}

func replyErr(err error) Reply {
	code := connect.CodeOf(err).String()
	if errors.Is(err, context.DeadlineExceeded) {
		code = connect.CodeDeadlineExceeded.String()
	}
	r := Reply{Code: code, Err: err}
	if ce := new(connect.Error); errors.As(err, &ce) {
		r.Recorded = ce.Meta().Get(SaleRecorded)
	}
	return r
}

var ok = Reply{Code: "ok"}

func unarySender(cl salesv1connect.SalesServiceClient) func(context.Context, []*salesv1.Sale) Reply {
	return func(ctx context.Context, sales []*salesv1.Sale) Reply {
		resp, err := cl.RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: sales[0]})
		if err != nil {
			return replyErr(err)
		}
		if resp.GetSaleId() == "" {
			return Reply{Code: "internal", Err: errors.New("RecordSale answered no sale_id")}
		}
		return ok
	}
}

func batchSender(cl salesv1connect.SalesServiceClient) func(context.Context, []*salesv1.Sale) Reply {
	return func(ctx context.Context, sales []*salesv1.Sale) Reply {
		resp, err := cl.RecordSales(ctx, &salesv1.RecordSalesRequest{Sales: sales})
		if err != nil {
			return replyErr(err)
		}
		return batchReply(resp, len(sales))
	}
}

// batchReply is the Reply of a RecordSales call of n sales that succeeded.
func batchReply(resp *salesv1.RecordSalesResponse, n int) Reply {
	results := resp.GetResults()
	if len(results) != n {
		return Reply{Code: "internal", Err: fmt.Errorf("RecordSales answered %d results for %d sales", len(results), n)}
	}
	if resp.GetFailed() == 0 {
		return ok
	}
	codes := make([]string, n)
	for i, r := range results {
		codes[i] = r.GetErrorCode()
	}
	return Reply{Code: "ok", ItemCodes: codes}
}

func legacyGRPCSender(cl blackfridayconnect.ProductSaleServiceClient) func(context.Context, []*salesv1.Sale) Reply {
	return func(ctx context.Context, sales []*salesv1.Sale) Reply {
		s := sales[0]
		resp, err := cl.ProcesarVenta(ctx, &legacypb.ProductSaleRequest{
			Categoria:       legacypb.CategoriaProducto(s.GetCategory()),
			ProductoId:      s.GetProductId(),
			Precio:          float64(s.GetPriceCents()) / 100,
			CantidadVendida: s.GetQuantity(),
		})
		if err != nil {
			return replyErr(err)
		}
		if resp.GetEstado() != "OK" {
			return Reply{Code: "internal", Err: fmt.Errorf("ProcesarVenta estado = %q, want OK", resp.GetEstado())}
		}
		return ok
	}
}

// LegacyCategory is the course's name of each category.
var LegacyCategory = map[salesv1.Category]string{
	salesv1.Category_CATEGORY_ELECTRONICS: "Electronica",
	salesv1.Category_CATEGORY_CLOTHING:    "Ropa",
	salesv1.Category_CATEGORY_HOME:        "Hogar",
	salesv1.Category_CATEGORY_BEAUTY:      "Belleza",
}

// VentaBody is the course's JSON body for a sale, with the price in currency
// units as the course clients sent it.
func VentaBody(dst []byte, s *salesv1.Sale) []byte {
	dst = append(dst, `{"categoria":"`...)
	dst = append(dst, LegacyCategory[s.GetCategory()]...)
	dst = append(dst, `","producto_id":`...)
	dst = strconv.AppendQuote(dst, s.GetProductId())
	dst = append(dst, `,"precio":`...)
	cents := s.GetPriceCents()
	dst = strconv.AppendInt(dst, cents/100, 10)
	dst = append(dst, '.', byte('0'+cents%100/10), byte('0'+cents%10))
	dst = append(dst, `,"cantidad_vendida":`...)
	dst = strconv.AppendInt(dst, int64(s.GetQuantity()), 10)
	return append(dst, '}')
}

func restSender(hc *http.Client, url string) func(context.Context, []*salesv1.Sale) Reply {
	return func(ctx context.Context, sales []*salesv1.Sale) Reply {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(VentaBody(nil, sales[0])))
		if err != nil {
			return Reply{Code: "internal", Err: err}
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return Reply{Code: "deadline_exceeded", Err: err}
			}
			return Reply{Code: "unavailable", Err: err}
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return Reply{Code: "unavailable", Err: err}
		}
		var out struct {
			Estado string `json:"estado"`
			Error  string `json:"error"`
		}
		_ = json.Unmarshal(body, &out)
		if resp.StatusCode == http.StatusOK && out.Estado == "OK" {
			return ok
		}
		code := out.Error
		if code == "" {
			code = CodeOfStatus(resp.StatusCode)
		}
		return Reply{Code: code, Err: fmt.Errorf("POST /venta = %d %s", resp.StatusCode, bytes.TrimSpace(body)),
			Recorded: resp.Header.Get(SaleRecorded)}
	}
}

// CodeOfStatus names an HTTP status as the Connect code a client would get
// for it.
func CodeOfStatus(status int) string {
	switch status {
	case http.StatusOK:
		return "internal" // 200 without estado OK
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return "invalid_argument"
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return "resource_exhausted"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "permission_denied"
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return "unimplemented"
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return "unavailable"
	case http.StatusGatewayTimeout:
		return "deadline_exceeded"
	}
	return "http_" + strconv.Itoa(status)
}
