// Package server is the api's edge: one HTTP server speaking gRPC, gRPC-Web
// and Connect (JSON and binary) over HTTP/1.1 and cleartext HTTP/2 on one
// port, plus the course's REST paths, health and reflection.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/rs/cors"
	"google.golang.org/grpc"

	"blackfriday.local/contract/record"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/auth"
	"blackfriday.local/services/api/internal/legacy"
	"blackfriday.local/services/api/internal/metrics"
)

// Config holds the server's limits and policies.
type Config struct {
	// MaxRequestBytes bounds a request body, and a message once
	// decompressed.
	MaxRequestBytes int64
	// ProduceTimeout is the producer's, quoted in error messages.
	ProduceTimeout time.Duration
	// CORSAllowedOrigins lists the browser origins allowed; "*" allows any.
	// Empty turns CORS off: no cross-origin browser call is allowed (rs/cors
	// would read an empty list as "*", so it is never given one).
	CORSAllowedOrigins []string
	// WriteTokens, when it holds any token, makes every write RPC (and, with
	// ReadAuth, every read RPC but health) require one of them as a bearer
	// token. Nil or empty: no authentication, for development.
	WriteTokens *auth.Tokens
	// ReadAuth makes AnalyticsService and reflection require a token too.
	ReadAuth bool
	// LegacyOpen leaves the course's API (REST and gRPC) open even when
	// WriteTokens is set, for course clients that cannot send a header.
	LegacyOpen bool
	// MaxInflightWrites bounds the write calls served at once; beyond it
	// calls are answered resource_exhausted at once (1024 when zero).
	MaxInflightWrites int
	// MaxInflightBytes bounds the request bytes that the write calls in
	// flight read and hold (64 MiB when zero).
	MaxInflightBytes int64
	// MaxInflightBytesPerClient bounds those of one client's write calls
	// (client.go says who a client is). When zero: a quarter of
	// MaxInflightBytes, but room for at least one compressed request of
	// MaxRequestBytes and its allowance.
	MaxInflightBytesPerClient int64
	// WriteBodyTimeout bounds the time a write call's body takes to
	// arrive once the call is admitted, so that a stalled body lets go of
	// its slot and bytes soon (5s when zero; never beyond UnaryTimeout).
	WriteBodyTimeout time.Duration
	// TrustedProxies are the proxies whose X-Forwarded-For is believed to
	// name the client. Empty: the peer of a connection is the client.
	TrustedProxies []netip.Prefix
	// MaxWatchersPerClient bounds the WatchSummary streams one client may
	// hold open (100 when zero).
	MaxWatchersPerClient int
	// UnaryTimeout bounds reading a unary RPC or plain HTTP request and,
	// with ProduceTimeout added, writing its response (15s when zero).
	// Streaming RPCs have no overall bound.
	UnaryTimeout time.Duration
	// StreamWriteTimeout bounds each write of a streaming response, so a
	// client that stops reading is cut off (30s when zero).
	StreamWriteTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (5s when zero).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a connection left without requests this long (2m
	// when zero). A connection carrying a stream is not idle.
	IdleTimeout time.Duration
	// MaxConnections bounds the client connections open at once; one
	// beyond it is closed as soon as it is accepted (1024 when zero).
	MaxConnections int
	// MaxConnectionAge, when positive, asks a client connection to go
	// once it is this old, give or take a tenth (connage.go says how and
	// why). Zero keeps connections for as long as their clients like.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeGrace is the time a connection past its age has for
	// its calls and streams before it is closed (30s when zero).
	MaxConnectionAgeGrace time.Duration
	// GRPCServer names the server of native gRPC: GRPCServerGo (the
	// default when empty) or GRPCServerConnect.
	GRPCServer string
}

// The defaults of Config's timeouts.
const (
	defaultUnaryTimeout       = 15 * time.Second
	defaultStreamWriteTimeout = 30 * time.Second
	defaultReadHeaderTimeout  = 5 * time.Second
	defaultIdleTimeout        = 2 * time.Minute
	defaultMaxInflightWrites  = 1024
	defaultMaxInflightBytes   = 64 << 20
	defaultMaxConnections     = 1024
	defaultWriteBodyTimeout   = 5 * time.Second
	defaultWatchersPerClient  = 100
	defaultMaxConnAgeGrace    = 30 * time.Second
)

// Deps are the server's collaborators.
type Deps struct {
	// Recorder writes sales to Kafka.
	Recorder Recorder
	// Analytics answers AnalyticsService.
	Analytics salesv1connect.AnalyticsServiceHandler
	// Validator checks messages against the schemas' protovalidate rules.
	Validator protovalidate.Validator
	// Kafka and Valkey are checked by /readyz.
	Kafka, Valkey Pinger
	// Logger logs.
	Logger *slog.Logger
	// Metrics counts calls by procedure, protocol and code; nil keeps them
	// in a registry nobody scrapes.
	Metrics *metrics.Metrics
	// Dashboard serves the live dashboard's page at / and its files under
	// /assets/; nil serves none.
	Dashboard http.Handler
	// Tracing traces the calls; the zero value traces nothing.
	Tracing Tracing
}

// Server is the api's HTTP server.
type Server struct {
	http         *http.Server
	health       *grpchealth.StaticChecker
	services     []string
	kafka        Pinger
	valkey       Pinger
	log          *slog.Logger
	shuttingDown atomic.Bool
	// drain ends every stream when Shutdown begins.
	drain context.CancelFunc
	// maxConns and conns bound and count the client connections.
	maxConns int64
	conns    connCounts
	// maxAge and ageGrace bound the connections' lives (zero maxAge: no
	// bound); ages counts the connections they ended.
	maxAge, ageGrace time.Duration
	ages             ageCounts
	// adm admits the write calls.
	adm *admission
	// grpc serves native gRPC when GRPCServer is grpc-go, nil otherwise;
	// split shares the port with it once Serve has started.
	grpc         *grpc.Server
	sniffTimeout time.Duration
	mu           sync.Mutex
	split        *splitListener
	routed       splitCounts
}

// New builds the server and every route.
func New(cfg Config, deps Deps) *Server {
	log := deps.Logger
	m := deps.Metrics
	if m == nil {
		m = metrics.New()
	}
	errs := newErrorMapper(cfg.ProduceTimeout, log)
	services := []string{
		salesv1connect.SalesServiceName,
		salesv1connect.AnalyticsServiceName,
		blackfridayconnect.ProductSaleServiceName,
	}
	draining, drain := context.WithCancel(context.Background())
	s := &Server{
		health:   grpchealth.NewStaticChecker(services...),
		services: services,
		kafka:    deps.Kafka,
		valkey:   deps.Valkey,
		log:      log,
		drain:    drain,
		maxConns: int64(cmp.Or(cfg.MaxConnections, defaultMaxConnections)),
		maxAge:   cfg.MaxConnectionAge,
		ageGrace: cmp.Or(cfg.MaxConnectionAgeGrace, defaultMaxConnAgeGrace),
	}
	m.Gauge("bf_api_connections", "Client connections open.", func() float64 { return float64(s.conns.open.Load()) })
	m.Gauge("bf_api_connections_limit", "The most client connections open at once (MAX_CONNECTIONS).", func() float64 { return float64(s.maxConns) })
	m.Counter("bf_api_connections_refused_total", "Client connections closed at once because MAX_CONNECTIONS were open.",
		func() float64 { return float64(s.conns.refused.Load()) })
	m.Counter("bf_api_connections_aged_total", "Client connections asked to go (GOAWAY, or Connection: close) for reaching MAX_CONNECTION_AGE.",
		func() float64 { return float64(s.ages.aged.Load()) })
	m.Counter("bf_api_connections_age_closed_total", "Client connections closed for outliving MAX_CONNECTION_AGE by MAX_CONNECTION_AGE_GRACE.",
		func() float64 { return float64(s.ages.closed.Load()) })

	policy := &authPolicy{tokens: cfg.WriteTokens, reads: cfg.ReadAuth, legacyOpen: cfg.LegacyOpen}
	who := clients{trusted: cfg.TrustedProxies}
	watchers := newWatcherLimit(who, int64(cmp.Or(cfg.MaxWatchersPerClient, defaultWatchersPerClient)), m)
	unary := cmp.Or(cfg.UnaryTimeout, defaultUnaryTimeout)
	// Tracing, when on, is the outermost interceptor, so that its span
	// covers the whole call and every span the call starts is under it.
	var interceptors []connect.Interceptor
	if traced, err := deps.Tracing.interceptor(); err != nil {
		log.Error("RPCs are not traced", "err", err)
	} else if traced != nil {
		interceptors = append(interceptors, traced)
	}
	interceptors = append(interceptors,
		// Streaming calls only: unary ones pass through it.
		streamInterceptor{errors: errs, metrics: m, draining: draining, watchers: watchers},
		// Outermost but for tracing, so it sees every call's final code.
		metricsInterceptor(m),
		protocolInterceptor(),
		errorInterceptor(errs),
		// Before anything costs work: stamping, validation, Kafka.
		authInterceptor{policy: policy},
		stampInterceptor(time.Now),
		validateInterceptor{v: deps.Validator},
	)
	opts := connect.WithHandlerOptions(
		connect.WithRecover(recoverRPC(log)),
		connect.WithReadMaxBytes(int(cfg.MaxRequestBytes)),
		// connect-go compresses every answer a client accepts gzip for;
		// an ingest answer is a few dozen bytes, which gzip only makes
		// longer, at a CPU cost that counts under load.
		connect.WithCompressMinBytes(1024),
		connect.WithInterceptors(interceptors...),
	)
	totalBytes := cmp.Or(cfg.MaxInflightBytes, defaultMaxInflightBytes)
	adm := newAdmission(int64(cmp.Or(cfg.MaxInflightWrites, defaultMaxInflightWrites)), byteLimits{
		total:       totalBytes,
		perClient:   cmp.Or(cfg.MaxInflightBytesPerClient, min(max(totalBytes/4, 2*cfg.MaxRequestBytes), totalBytes)),
		request:     cfg.MaxRequestBytes,
		bodyTimeout: min(cmp.Or(cfg.WriteBodyTimeout, defaultWriteBodyTimeout), unary),
		clients:     who,
	}, policy, errs, m)
	s.adm = adm
	m.Gauge("bf_api_inflight_writes", "Write calls being served (at most MAX_INFLIGHT_WRITES).", func() float64 { return float64(adm.calls.Load()) })
	m.Gauge("bf_api_inflight_request_bytes", "Request bytes held by the write calls in flight (at most MAX_INFLIGHT_BYTES).",
		func() float64 { return float64(adm.held.Load()) })
	course := legacy.New(deps.Recorder, deps.Validator)
	sales := &salesService{rec: deps.Recorder, errors: errs}
	rest := course.RESTHandler(errs.toConnect, cfg.MaxRequestBytes)
	reflector := grpcreflect.NewStaticReflector(append(services, grpchealth.HealthV1ServiceName)...)

	mux := http.NewServeMux()
	// The ingest handlers: admission first, and codecs that reject what
	// the schema does not allow (codec.go).
	salesPath, salesHandler := salesv1connect.NewSalesServiceHandler(sales, opts, codecOptions(true))
	mux.Handle(salesPath, adm.rpcHandler(salesHandler))
	coursePath, courseHandler := blackfridayconnect.NewProductSaleServiceHandler(course, opts, codecOptions(false))
	mux.Handle(coursePath, adm.rpcHandler(courseHandler))
	for _, path := range []string{pathVenta, pathProcesar} {
		mux.Handle(path, deps.Tracing.http(http.MethodPost, path,
			m.WrapHTTP(path, string(record.ProtocolLegacyREST), adm.restHandler(path, legacy.WriteRESTError, rest))))
	}
	mux.Handle(salesv1connect.NewAnalyticsServiceHandler(deps.Analytics, opts))
	mux.Handle(grpchealth.NewHandler(s.health, opts))
	mux.Handle(grpcreflect.NewHandlerV1(reflector, opts))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, opts))
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if deps.Dashboard != nil {
		mux.Handle("GET /{$}", deps.Dashboard)
		mux.Handle("GET /assets/", deps.Dashboard)
	}

	handler := http.MaxBytesHandler(mux, cfg.MaxRequestBytes)
	if len(cfg.CORSAllowedOrigins) > 0 {
		handler = corsHandler(cfg.CORSAllowedOrigins, handler)
	}
	handler = recoverHTTP(log, handler)
	handler = deadlines(streamingPaths(), unary, unary+cfg.ProduceTimeout,
		cmp.Or(cfg.StreamWriteTimeout, defaultStreamWriteTimeout), handler)
	var connContext func(context.Context, net.Conn) context.Context
	if s.maxAge > 0 {
		handler, connContext = agedConns(handler), withAgingConn
	}

	if cfg.GRPCServer != GRPCServerConnect {
		edge := &grpcEdge{
			policy: policy, adm: adm, errs: errs, metrics: m, validator: deps.Validator,
			codec: newGRPCCodec(), log: log, now: time.Now,
			streams:     streamInterceptor{errors: errs, metrics: m, draining: draining, watchers: watchers},
			callTimeout: unary + cfg.ProduceTimeout,
			streaming:   streamingPaths(),
			streamWrite: cmp.Or(cfg.StreamWriteTimeout, defaultStreamWriteTimeout),
		}
		s.grpc = newGRPCServer(cfg, edge, sales, course, deps.Analytics, s.health, deps.Tracing)
		m.Counter("bf_api_connections_grpc_go_total", "Client connections handed to grpc-go: native gRPC (GRPC_SERVER=grpc-go).",
			func() float64 { return float64(s.routed.grpc.Load()) })
		m.Counter("bf_api_connections_sniff_dropped_total", "Client connections closed while their protocol was read: stalled, too long or garbled before their first request.",
			func() float64 { return float64(s.routed.dropped.Load()) })
	}
	s.sniffTimeout = cmp.Or(cfg.ReadHeaderTimeout, defaultReadHeaderTimeout)

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC without TLS: prior-knowledge h2c
	s.http = &http.Server{
		Handler:   handler,
		Protocols: protocols,
		// Slow or idle clients must not hold connections and memory, but
		// streams must last: no server-wide ReadTimeout or WriteTimeout,
		// which would cut them. deadlines bounds each request instead.
		ReadHeaderTimeout: cmp.Or(cfg.ReadHeaderTimeout, defaultReadHeaderTimeout),
		IdleTimeout:       cmp.Or(cfg.IdleTimeout, defaultIdleTimeout),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext:       connContext,
	}
	return s
}

// corsHandler lets browsers call the Connect, gRPC-Web and REST APIs from the
// allowed origins, with a bearer token (Authorization) when authentication is
// on. A request from any other origin gets no CORS header, so the browser
// keeps the answer from the page. No cookies are involved (credentials stay
// off): the token is sent explicitly, so a page from another origin cannot
// borrow a user's session.
func corsHandler(origins []string, next http.Handler) http.Handler {
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization"),
		ExposedHeaders: append(connectcors.ExposedHeaders(), SaleIDKey, SaleRecordedKey, AuthenticateKey, RetryAfterKey),
		MaxAge:         7200,
	}).Handler(next)
}

// Handler returns the server's root handler.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Serve serves on ln, at most MaxConnections at once, each for at most
// MaxConnectionAge and its grace, until Shutdown; it then returns
// http.ErrServerClosed. With grpc-go on, a split listener (sniff.go) sends
// native gRPC connections to it and every other to the HTTP server.
func (s *Server) Serve(ln net.Listener) error {
	ln = newConnLimit(ln, s.maxConns, &s.conns)
	var grpcDone chan error
	if s.grpc != nil {
		split := newSplitListener(ln, s.sniffTimeout, s.log, &s.routed)
		s.mu.Lock()
		s.split = split
		s.mu.Unlock()
		grpcDone = make(chan error, 1)
		var grpcLn net.Listener = split.grpc
		if s.maxAge > 0 {
			grpcLn = &grpcAges{Listener: grpcLn, age: s.maxAge, grace: s.ageGrace, counts: &s.ages}
		}
		go func() { grpcDone <- s.grpc.Serve(grpcLn) }()
		go split.run()
		ln = split.http
	}
	if s.maxAge > 0 {
		// grpc-go ages its own connections (keepalive's MaxConnectionAge).
		ln = &ageLimit{Listener: ln, age: s.maxAge, grace: s.ageGrace, counts: &s.ages}
	}
	err := s.http.Serve(ln)
	if errors.Is(err, net.ErrClosed) && s.shuttingDown.Load() {
		// Shutdown closed the split listener before the HTTP server.
		err = http.ErrServerClosed
	}
	if grpcDone != nil {
		_ = s.splitListener().Close()
		if gerr := <-grpcDone; gerr != nil && !errors.Is(err, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("grpc-go: %w", gerr))
		}
	}
	return err
}

func (s *Server) splitListener() *splitListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.split
}

// Shutdown reports NOT_SERVING to health checks and readiness probes, ends
// the streams (their clients get unavailable and reconnect), then stops
// accepting connections and waits, until ctx is done, for the calls in
// flight to finish, on both servers.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shuttingDown.Store(true)
	s.health.SetStatus("", grpchealth.StatusNotServing)
	for _, name := range s.services {
		s.health.SetStatus(name, grpchealth.StatusNotServing)
	}
	s.drain()
	if s.grpc == nil {
		return s.http.Shutdown(ctx)
	}
	if split := s.splitListener(); split != nil {
		_ = split.Close()
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s.grpc.GracefulStop()
	}()
	err := s.http.Shutdown(ctx)
	select {
	case <-stopped:
	case <-ctx.Done():
		// The calls left are cut, as the HTTP server leaves its own.
		s.grpc.Stop()
		<-stopped
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}
