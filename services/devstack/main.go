// Command devstack runs the whole blackfriday pipeline on one machine: an
// embedded Kafka (franz-go's kfake) unless KAFKA_BROKERS is set, a local
// Valkey or Redis server unless VALKEY_ADDR is set, and the api and
// aggregator binaries next to it. `make run` builds and starts it.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "devstack")

	valkey, err := startValkey(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("valkey: %w", err)
	}
	defer valkey.Stop()

	kafka, err := startKafka(cfg, log)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer kafka.Stop()

	env := []string{
		"PORT=" + cfg.Port,
		"KAFKA_BROKERS=" + kafka.Brokers,
		"KAFKA_TOPIC=" + cfg.Topic,
		"KAFKA_DLQ_TOPIC=" + cfg.DLQTopic,
		"VALKEY_ADDR=" + valkey.Addr,
		"HTTP_ADDR=" + cfg.AggregatorAddr,
	}
	procs := newSupervisor(cfg.BinDir, env)
	// The aggregator starts first so the consumer group is ready when the
	// first sale arrives.
	if err := procs.Start("aggregator"); err != nil {
		return err
	}
	if err := procs.Start("api"); err != nil {
		procs.Stop(cfg.StopTimeout)
		return err
	}
	defer procs.Stop(cfg.StopTimeout)

	if err := waitHTTP(ctx, "http://127.0.0.1:"+cfg.Port+"/healthz", 30*time.Second); err != nil {
		return fmt.Errorf("api did not come up: %w", err)
	}
	printBanner(cfg, kafka, valkey)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-procs.Exited():
		if errors.Is(err, errStopped) {
			return nil
		}
		return err
	}
}

func printBanner(cfg config, kafka *kafkaRunner, valkey *valkeyRunner) {
	fmt.Fprintf(os.Stderr, `
devstack: the pipeline is up.
  kafka:      %s
  valkey:     %s
  api:        http://localhost:%s (gRPC, gRPC-Web, Connect, legacy REST)
  aggregator: health on http://%s/healthz

Try:
  curl -s localhost:%[3]s/blackfriday.sales.v1.SalesService/RecordSale -H 'Content-Type: application/json' \
    -d '{"sale":{"category":"CATEGORY_ELECTRONICS","productId":"P1","priceCents":"19999","quantity":2}}'
  curl -s localhost:%[3]s/venta -H 'Content-Type: application/json' \
    -d '{"categoria":"Electronica","producto_id":"P7","precio":532.8812345,"cantidad_vendida":13}'
  curl -s --get localhost:%[3]s/blackfriday.sales.v1.AnalyticsService/GetSummary \
    --data-urlencode 'encoding=json' --data-urlencode 'message={}'

Press Ctrl-C to stop.
`, kafka.Description, valkey.Description, cfg.Port, cfg.AggregatorAddr)
}
