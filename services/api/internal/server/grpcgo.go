package server

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	legacypb "blackfriday.local/gen/blackfriday"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/ingest"
	"blackfriday.local/services/api/internal/legacy"
	"blackfriday.local/services/api/internal/metrics"
)

// The servers that may take native gRPC (Config.GRPCServer).
const (
	// GRPCServerGo serves gRPC with grpc-go's own server, on the same port:
	// the default, for about half the CPU per call of Go's HTTP/2 server
	// under connect-go (services/api/README.md).
	GRPCServerGo = "grpc-go"
	// GRPCServerConnect serves gRPC with connect-go, like every other
	// protocol.
	GRPCServerConnect = "connect"
)

// maxConcurrentStreams is the HTTP/2 streams one connection may carry at
// once on grpc-go, as Go's HTTP/2 server allows (grpc-go's own default is
// unbounded).
const maxConcurrentStreams = 250

// grpcEdge does on the grpc-go server what connect-go's interceptors and
// admission do on the other: it is a grpc-go unary and stream interceptor
// pair calling the same functions (the auth policy, admission, stamping,
// validation, the error mapping, the metrics), so a call is judged and
// answered alike whichever server took it.
type grpcEdge struct {
	policy    *authPolicy
	adm       *admission
	errs      *errorMapper
	metrics   *metrics.Metrics
	validator protovalidate.Validator
	codec     *grpcCodec
	streams   streamInterceptor
	log       *slog.Logger
	now       func() time.Time
	// callTimeout bounds a unary call, as deadlines does on the other
	// server: UnaryTimeout to read it, plus ProduceTimeout to answer.
	callTimeout time.Duration
	// streaming names the streaming procedures, each of whose writes must
	// finish within streamWrite (STREAM_WRITE_TIMEOUT), as deadlines
	// bounds them on the other server.
	streaming   map[string]bool
	streamWrite time.Duration
}

// newGRPCServer builds the grpc-go server with every service the connect-go
// server has: SalesService, AnalyticsService, the course's
// ProductSaleService, health and reflection.
func newGRPCServer(cfg Config, e *grpcEdge, sales *salesService, course *legacy.Service,
	analytics salesv1connect.AnalyticsServiceHandler, health grpchealth.Checker, tracing Tracing) *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(e.codec),
		grpc.ChainUnaryInterceptor(e.unary),
		grpc.ChainStreamInterceptor(e.stream),
		grpc.StatsHandler(grpcCallStats{metrics: e.metrics, adm: e.adm}),
		grpc.InTapHandle(e.tap),
		grpc.MaxRecvMsgSize(int(min(cfg.MaxRequestBytes, math.MaxInt32))),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.ConnectionTimeout(cmp.Or(cfg.ReadHeaderTimeout, defaultReadHeaderTimeout)),
		// As on the HTTP server: a connection without calls this long goes.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     cmp.Or(cfg.IdleTimeout, defaultIdleTimeout),
			MaxConnectionAge:      ageOrForever(cfg.MaxConnectionAge),
			MaxConnectionAgeGrace: cmp.Or(cfg.MaxConnectionAgeGrace, defaultMaxConnAgeGrace),
		}),
	}
	if h := tracing.grpcHandler(); h != nil {
		opts = append(opts, grpc.StatsHandler(h))
	}
	s := grpc.NewServer(opts...)
	salesv1.RegisterSalesServiceServer(s, sales)
	legacypb.RegisterProductSaleServiceServer(s, grpcCourse{course: course})
	salesv1.RegisterAnalyticsServiceServer(s, grpcAnalytics{h: analytics})
	healthpb.RegisterHealthServer(s, grpcHealth{checker: health})
	reflection.Register(s)
	return s
}

// ageOrForever is MaxConnectionAge as grpc-go takes it: our zero (no
// age) is grpc-go's infinity. grpc-go jitters the age by a tenth either
// way, as ageLimit does.
func ageOrForever(age time.Duration) time.Duration {
	if age <= 0 {
		return time.Duration(math.MaxInt64)
	}
	return age
}

// grpcAges counts, for the connections grpc-go serves, what ageLimit
// counts for the HTTP server's: grpc-go itself sends the GOAWAY at
// MaxConnectionAge (keepalive, jittered as ageLimit jitters) and closes
// the connection after the grace, so a connection that closes past the
// least jittered age was told to go, and one past that and the grace was
// closed for it.
type grpcAges struct {
	net.Listener
	age, grace time.Duration
	counts     *ageCounts
}

func (l *grpcAges) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &grpcAgedConn{Conn: c, l: l, opened: time.Now()}, nil
}

type grpcAgedConn struct {
	net.Conn
	l      *grpcAges
	opened time.Time
	once   sync.Once
}

func (c *grpcAgedConn) Close() error {
	c.once.Do(func() {
		lived, least := time.Since(c.opened), time.Duration(float64(c.l.age)*(1-ageJitter))
		if lived >= least {
			c.l.counts.aged.Add(1)
		}
		if lived >= least+c.l.grace {
			c.l.counts.closed.Add(1)
		}
	})
	return c.Conn.Close()
}

// unary serves a unary call: the same steps, in the same order, as
// connect-go's admission and interceptors.
func (e *grpcEdge) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	procedure := info.FullMethod
	header := grpcHeader(ctx)
	protocol := protocolOf(procedure, header, nil)
	defer func() {
		if v := recover(); v != nil {
			e.log.Error("panic in handler", "procedure", procedure, "panic", v, "stack", string(debug.Stack()))
			resp, err = nil, connect.NewError(connect.CodeInternal, errors.New("internal error"))
		}
		code := "ok"
		if err != nil {
			ce := e.errs.forCall(procedure, err)
			code = ce.Code().String()
			err = grpcError(ctx, ce)
		}
		markObserved(ctx)
		e.metrics.Observe(procedure, string(protocol), code, time.Since(start))
	}()
	// The message has arrived: its body deadline is past concern.
	ctx, cancel := context.WithTimeout(withoutBodyDeadline(ctx), e.callTimeout)
	defer cancel()
	ctx = ingest.WithProtocol(ctx, protocol)
	// A message that did not decode is answered only after the token and
	// the slot were checked, as on the other server, which decodes after
	// admission.
	badMessage := e.codec.take(req)
	if isWrite(procedure) {
		size := int64(messageSize(req))
		if enc := requestCompression(ctx); enc != "" && enc != "identity" {
			// A compressed message also held what it decompressed to,
			// as admission charges it on the other server.
			size += e.adm.bytes.request
		}
		release, err := e.adm.admitMessage(procedure, header, remoteAddr(ctx), size)
		if err != nil {
			return nil, err
		}
		defer release()
	} else if err := e.policy.check(procedure, header.Get("Authorization")); err != nil {
		return nil, err
	}
	if badMessage != nil {
		return nil, badMessage
	}
	if err := stamp(req, e.now()); err != nil {
		return nil, err
	}
	if err := validateMessage(e.validator, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// stream serves a streaming call (WatchSummary, reflection, health's
// Watch) as streamInterceptor and authInterceptor do on the other server.
func (e *grpcEdge) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	procedure := info.FullMethod
	header := grpcHeader(ss.Context())
	protocol := protocolOf(procedure, header, nil)
	ctx, cancel := context.WithCancelCause(ss.Context())
	defer cancel(nil)
	stop := context.AfterFunc(e.streams.draining, func() { cancel(errDraining) })
	defer stop()
	defer func() {
		if v := recover(); v != nil {
			e.log.Error("panic in handler", "procedure", procedure, "panic", v, "stack", string(debug.Stack()))
			err = connect.NewError(connect.CodeInternal, errors.New("internal error"))
		}
		code := "ok"
		if err != nil {
			ce := e.streams.toConnect(ctx, err)
			code = ce.Code().String()
			err = grpcError(ss.Context(), ce)
		}
		markObserved(ctx)
		e.metrics.Observe(procedure, string(protocol), code, time.Since(start))
	}()
	if err := e.policy.check(procedure, header.Get("Authorization")); err != nil {
		return err
	}
	if procedure == salesv1connect.AnalyticsServiceWatchSummaryProcedure {
		leave, err := e.streams.watchers.joinFrom(remoteAddr(ctx), header)
		if err != nil {
			return err
		}
		defer leave()
	}
	return handler(srv, &edgeStream{ServerStream: ss, ctx: ctx, e: e})
}

// edgeStream is a stream whose context ends when the server drains, and
// whose received messages are checked as unary requests are.
type edgeStream struct {
	grpc.ServerStream
	ctx context.Context
	e   *grpcEdge
}

func (s *edgeStream) Context() context.Context { return s.ctx }

type streamCutKey struct{}

// errStreamWriteStalled ends a stream whose client stopped reading.
var errStreamWriteStalled = errors.New("a write of the stream did not finish within STREAM_WRITE_TIMEOUT")

// SendMsg sends m, and ends the stream if that takes longer than
// STREAM_WRITE_TIMEOUT: grpc-go waits on the stream's context for a client
// that stopped reading, and the tap handle made that context one the edge
// can end.
func (s *edgeStream) SendMsg(m any) error {
	if cut, ok := s.ServerStream.Context().Value(streamCutKey{}).(context.CancelCauseFunc); ok && s.e.streamWrite > 0 {
		t := time.AfterFunc(s.e.streamWrite, func() { cut(errStreamWriteStalled) })
		defer t.Stop()
	}
	return s.ServerStream.SendMsg(m)
}

func (s *edgeStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := s.e.codec.take(m); err != nil {
		return err
	}
	return validateMessage(s.e.validator, m)
}

// grpcError is ce as grpc-go answers it: the same code, message and
// details, and its metadata as the connect-go server sends it, in the
// trailers, but for WWW-Authenticate, which HTTP allows in headers only.
func grpcError(ctx context.Context, ce *connect.Error) error {
	var hdr, trl metadata.MD
	for k, vs := range ce.Meta() {
		if strings.EqualFold(k, AuthenticateKey) {
			hdr = metadata.Join(hdr, metadata.MD{strings.ToLower(k): vs})
			continue
		}
		trl = metadata.Join(trl, metadata.MD{strings.ToLower(k): vs})
	}
	if hdr != nil {
		_ = grpc.SetHeader(ctx, hdr)
	}
	if trl != nil {
		_ = grpc.SetTrailer(ctx, trl)
	}
	st := &spb.Status{Code: int32(ce.Code()), Message: ce.Message()}
	for _, d := range ce.Details() {
		st.Details = append(st.Details, &anypb.Any{TypeUrl: "type.googleapis.com/" + d.Type(), Value: d.Bytes()})
	}
	return status.ErrorProto(st)
}

// grpcHeader is a call's request metadata as an http.Header, the shape
// the shared functions read (the auth policy, who a client is, protocolOf).
func grpcHeader(ctx context.Context) http.Header {
	md, _ := metadata.FromIncomingContext(ctx)
	h := make(http.Header, len(md)+1)
	for k, vs := range md {
		h[http.CanonicalHeaderKey(k)] = vs
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/grpc")
	}
	return h
}

// remoteAddr is the address of a call's peer, as http.Request.RemoteAddr
// gives it.
func remoteAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// messageSize is what a request holds of the byte budget: its encoded size.
func messageSize(m any) int {
	if pm, ok := m.(proto.Message); ok {
		return proto.Size(pm)
	}
	return 0
}

// grpcCourse serves the course's ProductSaleService on grpc-go with the
// one legacy.Service.
type grpcCourse struct {
	legacypb.UnimplementedProductSaleServiceServer
	course *legacy.Service
}

func (c grpcCourse) ProcesarVenta(ctx context.Context, req *legacypb.ProductSaleRequest) (*legacypb.ProductSaleResponse, error) {
	return c.course.ProcesarVenta(ctx, req)
}

// watcher is what serves WatchSummary on any server (*analytics.Service).
type watcher interface {
	Watch(ctx context.Context, send func(*salesv1.WatchSummaryResponse) error) error
}

// grpcAnalytics serves AnalyticsService on grpc-go with the one analytics
// handler.
type grpcAnalytics struct {
	salesv1.UnimplementedAnalyticsServiceServer
	h salesv1connect.AnalyticsServiceHandler
}

func (a grpcAnalytics) GetSummary(ctx context.Context, req *salesv1.GetSummaryRequest) (*salesv1.GetSummaryResponse, error) {
	return a.h.GetSummary(ctx, req)
}

func (a grpcAnalytics) GetTopProducts(ctx context.Context, req *salesv1.GetTopProductsRequest) (*salesv1.GetTopProductsResponse, error) {
	return a.h.GetTopProducts(ctx, req)
}

func (a grpcAnalytics) GetPriceHistory(ctx context.Context, req *salesv1.GetPriceHistoryRequest) (*salesv1.GetPriceHistoryResponse, error) {
	return a.h.GetPriceHistory(ctx, req)
}

func (a grpcAnalytics) GetSalesRate(ctx context.Context, req *salesv1.GetSalesRateRequest) (*salesv1.GetSalesRateResponse, error) {
	return a.h.GetSalesRate(ctx, req)
}

func (a grpcAnalytics) WatchSummary(_ *salesv1.WatchSummaryRequest, stream grpc.ServerStreamingServer[salesv1.WatchSummaryResponse]) error {
	w, ok := a.h.(watcher)
	if !ok {
		return connect.NewError(connect.CodeUnimplemented, errors.New("WatchSummary is not served"))
	}
	return w.Watch(stream.Context(), stream.Send)
}

// grpcHealth serves grpc.health.v1.Health on grpc-go from the one checker
// the connect-go server answers from, so both report NOT_SERVING at
// shutdown alike. Watch is not served, as connect-go's grpchealth does not
// serve it.
type grpcHealth struct {
	healthpb.UnimplementedHealthServer
	checker grpchealth.Checker
}

func (h grpcHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	resp, err := h.checker.Check(ctx, &grpchealth.CheckRequest{Service: req.GetService()})
	if err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_ServingStatus(resp.Status)}, nil
}

// grpcCallStats counts the calls grpc-go ends before the edge sees them
// (a message larger than MaxRequestBytes, a broken envelope, an unknown
// compression), as admission counts those connect-go ends before its
// interceptors: every call is counted once.
type grpcCallStats struct {
	metrics *metrics.Metrics
	adm     *admission
}

type grpcCallKey struct{}

type grpcCall struct {
	start    time.Time
	method   string
	observed *atomic.Bool
	// compression is the request's grpc-encoding, which grpc-go keeps
	// out of the metadata.
	compression atomic.Value
}

// requestCompression is the grpc-encoding of the call ctx carries; "" when
// none.
func requestCompression(ctx context.Context) string {
	if c, ok := ctx.Value(grpcCallKey{}).(*grpcCall); ok {
		v, _ := c.compression.Load().(string)
		return v
	}
	return ""
}

func (s grpcCallStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	c := &grpcCall{start: time.Now(), method: info.FullMethodName, observed: new(atomic.Bool)}
	return context.WithValue(context.WithValue(ctx, grpcCallKey{}, c), observedKey{}, c.observed)
}

func (s grpcCallStats) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	c, ok := ctx.Value(grpcCallKey{}).(*grpcCall)
	if !ok {
		return
	}
	if in, ok := rs.(*stats.InHeader); ok {
		c.compression.Store(in.Compression)
		return
	}
	end, ok := rs.(*stats.End)
	if !ok {
		return
	}
	late := lateBody(ctx)
	if c.observed.Load() {
		return
	}
	if late {
		s.adm.lateBodies.Add(1)
	}
	code := "ok"
	if end.Error != nil {
		code = connect.Code(status.Code(end.Error)).String()
	}
	protocol := protocolOf(c.method, http.Header{"Content-Type": {"application/grpc"}}, nil)
	s.metrics.Observe(c.method, string(protocol), code, time.Since(c.start))
}

func (grpcCallStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (grpcCallStats) HandleConn(context.Context, stats.ConnStats) {}

// The body deadline on grpc-go. grpc-go reads a call's message before any
// interceptor runs, so the edge cannot bound the read as admission does on
// the other server; its tap handle, which runs when the headers arrive and
// whose context is the one grpc-go reads the message under, can. A write
// call's message must then arrive within WriteBodyTimeout, or grpc-go ends
// the read with deadline_exceeded, and the stalled call holds nothing
// longer. Once the message has arrived the deadline no longer applies: the
// edge runs the call under a context that keeps the values of the call's
// but ends as the stream does (bodyRead).

type bodyDeadlineKey struct{}

// bodyDeadline is what the tap handle set up for one write call.
type bodyDeadline struct {
	// stream is the call's context without the body deadline.
	stream context.Context
	// body ends at the body deadline; cancel frees its timer.
	body   context.Context
	cancel context.CancelFunc
}

// tap gives each write call its body deadline, and each stream the means
// to be cut when a write of it stalls (edgeStream.SendMsg).
func (e *grpcEdge) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if e.streaming[info.FullMethodName] {
		ctx, cancel := context.WithCancelCause(ctx)
		return context.WithValue(ctx, streamCutKey{}, cancel), nil
	}
	if !isWrite(info.FullMethodName) {
		return ctx, nil
	}
	body, cancel := context.WithTimeoutCause(ctx, e.adm.bytes.bodyTimeout, errBodyLate)
	return context.WithValue(body, bodyDeadlineKey{}, &bodyDeadline{stream: ctx, body: body, cancel: cancel}), nil
}

// withoutBodyDeadline returns ctx as the call goes on once its message has
// arrived: its values, and the stream's end without the body deadline.
func withoutBodyDeadline(ctx context.Context) context.Context {
	bd, ok := ctx.Value(bodyDeadlineKey{}).(*bodyDeadline)
	if !ok {
		return ctx
	}
	return bodyRead{Context: bd.stream, values: ctx}
}

// bodyRead is a context that ends with Context and holds the values of
// values.
type bodyRead struct {
	context.Context
	values context.Context
}

func (c bodyRead) Value(key any) any { return c.values.Value(key) }

// AfterFunc lets contexts derived from c follow it without a goroutine of
// their own.
func (c bodyRead) AfterFunc(f func()) func() bool { return context.AfterFunc(c.Context, f) }

// lateBody reports whether the call ctx carries failed for its body
// deadline, and frees the deadline's timer.
func lateBody(ctx context.Context) bool {
	bd, ok := ctx.Value(bodyDeadlineKey{}).(*bodyDeadline)
	if !ok {
		return false
	}
	late := errors.Is(context.Cause(bd.body), errBodyLate)
	bd.cancel()
	return late
}
