// Command aggregator consumes sales from Kafka and folds them into Valkey,
// counting each sale exactly once.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"blackfriday.local/contract/settings"
	"blackfriday.local/contract/telemetry"
	"blackfriday.local/services/aggregator/internal/aggregate"
	"blackfriday.local/services/aggregator/internal/consume"
	"blackfriday.local/services/aggregator/internal/metrics"
	"blackfriday.local/services/aggregator/internal/store"
)

func main() {
	if exit, err := parseArgs(os.Args[1:], os.Stdout); exit {
		if err != nil {
			fmt.Fprintln(os.Stderr, "aggregator:", err)
			os.Exit(2)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "aggregator:", err)
		os.Exit(1)
	}
}

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func run(ctx context.Context) error {
	notes, err := settings.CheckEnviron("aggregator", settings.Of(newConfig()), os.Environ())
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	cfg, err := loadConfig(os.LookupEnv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	log.Info("starting aggregator", "version", version, "config", cfg)
	for _, note := range notes {
		log.Warn(note)
	}
	if cfg.Kafka.PlaintextPassword() {
		log.Warn("KAFKA_SASL_MECHANISM=PLAIN without KAFKA_TLS=true sends the password in the clear")
	}
	securityOpts, err := cfg.Kafka.Options()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	// Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; the
	// OpenTelemetry SDK reads its own variables (package telemetry).
	tel, err := telemetry.Start(ctx, telemetry.ServiceAggregator, log)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	defer tel.Stop(log)
	log.Info("tracing", "tracing", tel)
	traces := newTracing(tel, cfg.Group)

	valkey, err := dialValkey(ctx, cfg, traces.valkey, log)
	if err != nil {
		return err
	}
	defer valkey.Close()

	// Best effort: in production the topics are managed (Strimzi
	// KafkaTopic); locally this saves a step.
	topicsCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	if err := consume.EnsureTopics(topicsCtx, append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, securityOpts...), cfg.TopicPartitions, cfg.Topic, cfg.DLQTopic); err != nil {
		log.Warn("could not create missing topics; continuing", "err", err)
	}
	cancel()

	dec := aggregate.NewDecoder()
	m := metrics.New()
	clientOpts := slices.Concat(securityOpts, []kgo.Opt{
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.WithHooks(traces.hooks(kprom.NewMetrics("bf_aggregator", kprom.Registerer(m.Registry())))...),
	})
	if cfg.InstanceID != "" {
		clientOpts = append(clientOpts, kgo.InstanceID(cfg.InstanceID))
	}
	consumer := consume.New(consume.Config{
		Brokers:           cfg.Brokers,
		Topic:             cfg.Topic,
		DLQTopic:          cfg.DLQTopic,
		Group:             cfg.Group,
		MaxPollRecords:    cfg.PollMaxRecords,
		ReconcileInterval: cfg.ReconcileInterval,
		DedupWindow:       cfg.DedupWindow,
		LogResetUnready:   cfg.LogResetUnready,
		ClientOptions:     clientOpts,
		Observer:          m,
		Tracer:            traces.apply,
	}, store.New(valkey, cfg.KeyPrefix, cfg.RateTTL), dec, log)
	m.Health(consumer.Ready, valkeyUp(valkey, valkeyPingTimeout))

	httpDone := make(chan error, 1)
	var srv *http.Server
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
		}
		srv = &http.Server{
			Handler:           healthHandler(consumer.Ready, m.Handler()),
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       60 * time.Second,
		}
		// This goroutine ends when Shutdown below closes the listener.
		go func() { httpDone <- srv.Serve(ln) }()
		log.Info("serving probes", "addr", ln.Addr().String())
	} else {
		httpDone <- http.ErrServerClosed
	}

	runErr := consumer.Run(ctx)
	if cfg.InstanceID != "" && runErr == nil {
		leaveGroup(cfg, securityOpts, log)
	}

	if srv != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			log.Warn("probe server shutdown", "err", err)
		}
	}
	if err := <-httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
		runErr = errors.Join(runErr, fmt.Errorf("probe server: %w", err))
	}
	if runErr == nil {
		log.Info("aggregator stopped")
	}
	return runErr
}

// leaveGroup takes a static member out of its group as it stops. franz-go
// leaves a group on close only as a dynamic member: a static one stays, so
// that a container restarted after a crash (the same pod, the same
// KAFKA_INSTANCE_ID) takes its partitions back without a rebalance. A
// graceful stop (a scale-down, a rollout) is not coming back under that id,
// so it leaves, and its partitions move at once rather than after the
// session timeout.
func leaveGroup(cfg config, securityOpts []kgo.Opt, log *slog.Logger) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, securityOpts...)...)
	if err != nil {
		log.Warn("could not leave the group", "err", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(cfg.Group).InstanceIDs(cfg.InstanceID).Reason("aggregator stopped"))
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		log.Warn("could not leave the group; its partitions move after the session timeout", "instance", cfg.InstanceID, "err", err)
		return
	}
	log.Info("left the group", "instance", cfg.InstanceID)
}

// dialValkey connects to Valkey with newClient (nil: rueidis.NewClient),
// retrying until it answers or ctx ends, so that the aggregator can start
// before Valkey does.
func dialValkey(ctx context.Context, cfg config, newClient func(rueidis.ClientOption) (rueidis.Client, error), log *slog.Logger) (rueidis.Client, error) {
	backoff := 250 * time.Millisecond
	for {
		client, err := store.Dial(ctx, store.Options{Addr: cfg.ValkeyAddr, Username: cfg.ValkeyUsername, Password: cfg.ValkeyPassword, NewClient: newClient})
		if err == nil {
			return client, nil
		}
		log.Warn("valkey is not reachable yet; retrying", "addr", cfg.ValkeyAddr, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("valkey at %s: %w", cfg.ValkeyAddr, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
