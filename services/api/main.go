// Command api is blackfriday's sales API: it takes sales over gRPC, gRPC-Web,
// Connect and the course's legacy REST and gRPC APIs on one port, writes them
// durably to Kafka, and answers analytics queries from Valkey.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"buf.build/go/protovalidate"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"blackfriday.local/contract/settings"
	"blackfriday.local/contract/telemetry"
	"blackfriday.local/services/api/internal/analytics"
	"blackfriday.local/services/api/internal/auth"
	"blackfriday.local/services/api/internal/ingest"
	"blackfriday.local/services/api/internal/lag"
	"blackfriday.local/services/api/internal/metrics"
	"blackfriday.local/services/api/internal/server"
	"blackfriday.local/services/api/internal/web"
)

func main() {
	if exit, err := parseArgs(os.Args[1:], os.Stdout); exit {
		if err != nil {
			fmt.Fprintln(os.Stderr, "api:", err)
			os.Exit(2)
		}
		return
	}
	// run reads its settings through a lookup, so tests can give it
	// theirs; the whole environment is checked here, once.
	notes, err := settings.CheckEnviron("api", settings.Of(newConfig()), os.Environ())
	if err != nil {
		fmt.Fprintln(os.Stderr, "api: config:", err)
		os.Exit(1)
	}
	for _, note := range notes {
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Warn(note)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = run(ctx, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

// topicTimeout bounds the best-effort topic creation at start.
const topicTimeout = 10 * time.Second

// run serves until ctx is done, then shuts down gracefully. It reads its
// configuration through getenv (os.Getenv, or a test's map).
func run(ctx context.Context, getenv func(string) string) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	streams := cfg.Streams
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	log.Info("starting api", "config", cfg)
	if cfg.Kafka.PlaintextPassword() {
		log.Warn("KAFKA_SASL_MECHANISM=PLAIN without KAFKA_TLS=true sends the password in the clear")
	}
	kafkaSecurity, err := cfg.Kafka.Options()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	tokens, err := auth.Load(cfg.WriteTokensFile, cfg.WriteTokens)
	if err != nil {
		return fmt.Errorf("config: WRITE_TOKENS_FILE or WRITE_TOKENS: %w", err)
	}
	switch {
	case tokens.Len() == 0:
		log.Warn("write RPCs are not authenticated: anyone who reaches the port can record sales (set WRITE_TOKENS_FILE in production)")
	case cfg.WriteTokens != "":
		log.Warn("WRITE_TOKENS holds bearer tokens in the environment; in production mount them from a Secret with WRITE_TOKENS_FILE")
	}
	if tokens.Len() > 0 {
		log.Info("write RPCs need a bearer token", "tokens", tokens.Len(), "read_auth", cfg.ReadAuth, "legacy_write_auth", cfg.LegacyWriteAuth)
	}

	// Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; the
	// OpenTelemetry SDK reads its own variables (package telemetry).
	tel, err := telemetry.Start(ctx, telemetry.ServiceAPI, log)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer tel.Stop(log)
	log.Info("tracing", "tracing", tel)
	traces := newTracing(tel)

	m := metrics.New()
	// kprom's default details plus produced batches and records: the
	// capacity plan divides the broker's CPU by them (loadgen compare).
	produceDetail := kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.UncompressedBytes, kprom.Batches, kprom.Records)
	compression, err := ingest.ParseCompression(cfg.KafkaCompression)
	if err != nil {
		return err
	}
	producer, err := ingest.New(ingest.Config{
		Brokers:            cfg.KafkaBrokers,
		Topic:              cfg.KafkaTopic,
		Partitions:         cfg.KafkaTopicPartitions,
		ProduceTimeout:     cfg.ProduceTimeout,
		MaxBufferedRecords: cfg.MaxBufferedRecords,
		Linger:             cfg.KafkaLinger,
		Compression:        compression,
		Hooks:              traces.hooks(kprom.NewMetrics("bf_api", kprom.Registerer(m.Registry()), produceDetail)),
		BatchHooks:         traces.hooks(kprom.NewMetrics("bf_api", kprom.Subsystem("batch"), kprom.Registerer(m.Registry()), produceDetail)),
		ClientOpts:         kafkaSecurity,
		Traced:             tel != nil,
	}, log)
	if err != nil {
		return err
	}
	m.Gauge("bf_api_producer_buffered_records", "Records awaiting Kafka's acknowledgement.",
		func() float64 { return float64(producer.Buffered()) })
	m.Gauge("bf_api_producer_buffer_limit", "The most records that may await an acknowledgement (MAX_BUFFERED_RECORDS for single sales, and as many for batches when KAFKA_LINGER is set).",
		func() float64 { return float64(producer.BufferLimit()) })
	var recorder server.Recorder = producer
	var kafka server.Pinger = producer
	if cfg.SalesSink == "discard" {
		log.Warn("SALES_SINK=discard: sales are acknowledged WITHOUT being written to Kafka; for load comparisons only")
		recorder, kafka = ingest.Discard{}, ingest.Discard{}
	}
	// The dashboard's lag reads the topic's offsets with a client of its
	// own, so it never queues behind sales in the producer's.
	topicOffsets, err := lag.New(cfg.KafkaBrokers, cfg.KafkaTopic,
		append(slices.Clone(kafkaSecurity), kgo.WithLogger(kgo.BasicLogger(io.Discard, kgo.LogLevelNone, nil)))...)
	if err != nil {
		return err
	}
	defer topicOffsets.Close()
	store := analytics.New(analytics.Config{
		Addr:           cfg.ValkeyAddr,
		Username:       cfg.ValkeyUsername,
		Password:       cfg.ValkeyPassword,
		KeyPrefix:      cfg.ValkeyKeyPrefix,
		Timeout:        cfg.ValkeyTimeout,
		Topic:          cfg.KafkaTopic,
		Offsets:        topicOffsets,
		WatchInterval:  streams.WatchInterval,
		WatchHeartbeat: streams.WatchHeartbeat,
		MaxWatchers:    streams.MaxWatchers,
		NewClient:      traces.valkey,
	})
	defer store.Close()
	dashboard, err := web.New()
	if err != nil {
		return err
	}
	validator, err := protovalidate.New()
	if err != nil {
		return fmt.Errorf("validator: %w", err)
	}
	srv := server.New(server.Config{
		MaxRequestBytes:           int64(cfg.MaxRequestBytes),
		ProduceTimeout:            cfg.ProduceTimeout,
		CORSAllowedOrigins:        cfg.CORSAllowedOrigins,
		WriteTokens:               tokens,
		ReadAuth:                  cfg.ReadAuth,
		LegacyOpen:                !cfg.LegacyWriteAuth,
		MaxInflightWrites:         cfg.MaxInflightWrites,
		MaxInflightBytes:          int64(cfg.MaxInflightBytes),
		MaxInflightBytesPerClient: int64(cfg.MaxInflightBytesPerClient),
		TrustedProxies:            cfg.TrustedProxies,
		WriteBodyTimeout:          streams.WriteBodyTimeout,
		MaxWatchersPerClient:      streams.MaxWatchersPerClient,
		ReadHeaderTimeout:         cfg.ReadHeaderTimeout,
		MaxConnections:            cfg.MaxConnections,
		MaxConnectionAge:          cfg.MaxConnectionAge,
		MaxConnectionAgeGrace:     cfg.MaxConnectionAgeGrace,
		GRPCServer:                cfg.GRPCServer,
		UnaryTimeout:              streams.UnaryTimeout,
		StreamWriteTimeout:        streams.StreamWriteTimeout,
	}, server.Deps{
		Recorder:  recorder,
		Analytics: store,
		Validator: validator,
		Kafka:     kafka,
		Valkey:    store,
		Logger:    log,
		Metrics:   m,
		Dashboard: dashboard,
		Tracing:   traces.server,
	})
	stopMetrics, err := serveMetrics(cfg.MetricsAddr, cfg.Pprof, m, log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(cfg.Port)))
	if err != nil {
		return err
	}

	// The topic is created in the background: Kafka may be down, and the
	// server must answer anyway.
	topicDone := make(chan struct{})
	go func() {
		defer close(topicDone)
		ctx, cancel := context.WithTimeout(ctx, topicTimeout)
		defer cancel()
		if err := producer.EnsureTopic(ctx); err != nil {
			log.Warn("could not ensure the sales topic; producing anyway", "err", err)
		}
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String())

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}

	// One deadline for the whole shutdown: drain the calls in flight, then
	// flush what the producer still holds.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(shutdownCtx); err != nil {
		errs = append(errs, fmt.Errorf("drain: %w", err))
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("serve: %w", err))
	}
	<-topicDone
	if err := producer.Close(shutdownCtx); err != nil {
		// Every caller was answered, so what is left was never
		// acknowledged to anyone: worth a warning, not a failed exit.
		log.Warn("closed the producer with records unacknowledged", "err", err)
	}
	log.Info("stopped")
	return errors.Join(errs...)
}

// serveMetrics serves /metrics on its own listener, away from the public
// port, and with withPprof Go's profiles under /debug/pprof/, until the
// returned stop function is called. An empty addr serves nothing.
func serveMetrics(addr string, withPprof bool, m *metrics.Metrics, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on METRICS_ADDR %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
