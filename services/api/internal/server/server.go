// Package server is the api's edge: one HTTP server speaking gRPC, gRPC-Web
// and Connect (JSON and binary) over HTTP/1.1 and cleartext HTTP/2 on one
// port, plus the course's REST paths, health and reflection.
package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/validate"
	"github.com/rs/cors"

	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/ingest"
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
	CORSAllowedOrigins []string
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
}

// The defaults of Config's timeouts.
const (
	defaultUnaryTimeout       = 15 * time.Second
	defaultStreamWriteTimeout = 30 * time.Second
	defaultReadHeaderTimeout  = 5 * time.Second
	defaultIdleTimeout        = 2 * time.Minute
)

func orDefault(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

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
	}

	opts := connect.WithHandlerOptions(
		connect.WithRecover(recoverRPC(log)),
		connect.WithReadMaxBytes(int(cfg.MaxRequestBytes)),
		connect.WithInterceptors(
			// Streaming calls only: unary ones pass through it.
			streamInterceptor{errors: errs, metrics: m, draining: draining},
			// Outermost, so it sees every call's final code.
			metricsInterceptor(m),
			protocolInterceptor(),
			errorInterceptor(errs),
			stampInterceptor(time.Now),
			validate.NewInterceptor(validate.WithValidator(deps.Validator)),
		),
	)
	course := legacy.New(deps.Recorder, deps.Validator)
	rest := course.RESTHandler(errs.toConnect, cfg.MaxRequestBytes)
	reflector := grpcreflect.NewStaticReflector(append(services, grpchealth.HealthV1ServiceName)...)

	mux := http.NewServeMux()
	mux.Handle(salesv1connect.NewSalesServiceHandler(&salesService{rec: deps.Recorder, errors: errs}, opts))
	mux.Handle(salesv1connect.NewAnalyticsServiceHandler(deps.Analytics, opts))
	mux.Handle(blackfridayconnect.NewProductSaleServiceHandler(course, opts))
	mux.Handle(grpchealth.NewHandler(s.health, opts))
	mux.Handle(grpcreflect.NewHandlerV1(reflector, opts))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, opts))
	mux.Handle("/venta", m.WrapHTTP("/venta", string(ingest.ProtocolLegacyREST), rest))
	mux.Handle("/procesar", m.WrapHTTP("/procesar", string(ingest.ProtocolLegacyREST), rest))
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if deps.Dashboard != nil {
		mux.Handle("GET /{$}", deps.Dashboard)
		mux.Handle("GET /assets/", deps.Dashboard)
	}

	handler := http.MaxBytesHandler(mux, cfg.MaxRequestBytes)
	handler = corsHandler(cfg.CORSAllowedOrigins, handler)
	handler = recoverHTTP(log, handler)
	unary := orDefault(cfg.UnaryTimeout, defaultUnaryTimeout)
	handler = deadlines(streamingPaths(), unary, unary+cfg.ProduceTimeout,
		orDefault(cfg.StreamWriteTimeout, defaultStreamWriteTimeout), handler)

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC without TLS: prior-knowledge h2c
	s.http = &http.Server{
		Handler:   handler,
		Protocols: protocols,
		// Slow or idle clients must not hold connections and memory, but
		// streams must last: no server-wide ReadTimeout or WriteTimeout,
		// which would cut them. deadlines bounds each request instead.
		ReadHeaderTimeout: orDefault(cfg.ReadHeaderTimeout, defaultReadHeaderTimeout),
		IdleTimeout:       orDefault(cfg.IdleTimeout, defaultIdleTimeout),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// corsHandler lets browsers call the Connect, gRPC-Web and REST APIs from the
// allowed origins.
func corsHandler(origins []string, next http.Handler) http.Handler {
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: connectcors.AllowedHeaders(),
		ExposedHeaders: append(connectcors.ExposedHeaders(), SaleIDKey, SaleRecordedKey),
		MaxAge:         7200,
	}).Handler(next)
}

// Handler returns the server's root handler.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Serve serves on ln until Shutdown; it then returns http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error { return s.http.Serve(ln) }

// Shutdown reports NOT_SERVING to health checks and readiness probes, ends
// the streams (their clients get unavailable and reconnect), then stops
// accepting connections and waits, until ctx is done, for the calls in
// flight to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shuttingDown.Store(true)
	s.health.SetStatus("", grpchealth.StatusNotServing)
	for _, name := range s.services {
		s.health.SetStatus(name, grpchealth.StatusNotServing)
	}
	s.drain()
	return s.http.Shutdown(ctx)
}
