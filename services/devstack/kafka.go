package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// kafkaRunner is the Kafka the pipeline uses: a real one named by
// KAFKA_BROKERS, or an in-process kfake cluster that lives as long as devstack.
type kafkaRunner struct {
	Brokers     string
	Description string
	cluster     *kfake.Cluster
}

func startKafka(cfg config, log *slog.Logger) (*kafkaRunner, error) {
	if cfg.Brokers != "" {
		log.Info("using the Kafka in KAFKA_BROKERS", "brokers", cfg.Brokers)
		return &kafkaRunner{Brokers: cfg.Brokers, Description: "KAFKA_BROKERS=" + cfg.Brokers}, nil
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(cfg.KafkaPort),
		kfake.SeedTopics(cfg.Partitions, cfg.Topic, cfg.DLQTopic),
		kfake.AllowAutoTopicCreation(),
	)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka on port %d (set DEVSTACK_KAFKA_PORT or KAFKA_BROKERS): %w", cfg.KafkaPort, err)
	}
	brokers := strings.Join(c.ListenAddrs(), ",")
	log.Info("started an embedded Kafka (kfake, in memory)", "brokers", brokers, "topics", []string{cfg.Topic, cfg.DLQTopic}, "partitions", cfg.Partitions)
	return &kafkaRunner{
		Brokers:     brokers,
		Description: fmt.Sprintf("embedded kfake at %s, in memory (topics %s and %s, %d partitions)", brokers, cfg.Topic, cfg.DLQTopic, cfg.Partitions),
		cluster:     c,
	}, nil
}

// Stop closes the embedded cluster, if devstack started one.
func (k *kafkaRunner) Stop() {
	if k.cluster != nil {
		k.cluster.Close()
	}
}
