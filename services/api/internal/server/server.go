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
	s := &Server{
		health:   grpchealth.NewStaticChecker(services...),
		services: services,
		kafka:    deps.Kafka,
		valkey:   deps.Valkey,
		log:      log,
	}

	opts := connect.WithHandlerOptions(
		connect.WithRecover(recoverRPC(log)),
		connect.WithReadMaxBytes(int(cfg.MaxRequestBytes)),
		connect.WithInterceptors(
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

	handler := http.MaxBytesHandler(mux, cfg.MaxRequestBytes)
	handler = corsHandler(cfg.CORSAllowedOrigins, handler)
	handler = recoverHTTP(log, handler)

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC without TLS: prior-knowledge h2c
	s.http = &http.Server{
		Handler:   handler,
		Protocols: protocols,
		// Every RPC here is unary and small, and waits at most the
		// produce timeout: bound each phase so slow or idle clients cannot
		// hold connections and memory.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15*time.Second + cfg.ProduceTimeout,
		IdleTimeout:       2 * time.Minute,
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

// Shutdown reports NOT_SERVING to health checks and readiness probes, then
// stops accepting connections and waits, until ctx is done, for the calls in
// flight to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shuttingDown.Store(true)
	s.health.SetStatus("", grpchealth.StatusNotServing)
	for _, name := range s.services {
		s.health.SetStatus(name, grpchealth.StatusNotServing)
	}
	return s.http.Shutdown(ctx)
}
