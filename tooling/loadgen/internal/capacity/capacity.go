// Package capacity sizes the deployment for a rate of sales from CPU costs
// per unit measured by loadgen compare: api pods, Kafka brokers and
// partitions, aggregator replicas and Valkey primaries, each from the
// cores it needs at a target utilisation of what one pod may use.
package capacity

import (
	"fmt"
	"math"
)

// Costs are the CPU costs the plan works from, in µs of one core.
type Costs struct {
	// APIUSPerSale is the api's CPU per sale with the protocol planned for.
	APIUSPerSale float64
	// BrokerUSPerRecord is the broker's CPU per record, its fetches by the
	// aggregator included, with the batching that protocol gave.
	BrokerUSPerRecord float64
	// AggregatorUSPerSale and ValkeyUSPerSale are per sale at the batch
	// size the plan assumes.
	AggregatorUSPerSale float64
	ValkeyUSPerSale     float64
}

// Assumptions are what the plan takes as given besides the costs.
type Assumptions struct {
	// Utilisation is the share of a pod's CPU limit the plan fills (0.6).
	Utilisation float64
	// APICPU, AggregatorCPU and BrokerCPU are the CPU limits of one api
	// pod, one aggregator pod and one Kafka node.
	APICPU, AggregatorCPU, BrokerCPU float64
	// ValkeyCPU is what one Valkey primary can use: it executes commands
	// on one thread, so 1 whatever its pod's limit.
	ValkeyCPU float64
	// Replication is the topic's replication factor: every record costs
	// each replica's broker about what it costs the leader.
	Replication int
	// MinBrokers and MinPartitions are the prod overlay's.
	MinBrokers, MinPartitions int
}

// Prod is what kustomize/overlays/prod declares (TestProdMatchesOverlay
// reads its files): api and aggregator pods
// limited to 2 CPU, Kafka nodes to 4, replication factor 3 over 3 nodes,
// 12 partitions; Valkey's pod has 2 CPU but one command thread.
var Prod = Assumptions{
	Utilisation: 0.6,
	APICPU:      2, AggregatorCPU: 2, BrokerCPU: 4, ValkeyCPU: 1,
	Replication: 3, MinBrokers: 3, MinPartitions: 12,
}

// Plan is the deployment for one rate.
type Plan struct {
	Rate float64
	// Cores each part needs at full use of a core.
	APICores, BrokerCores, AggregatorCores, ValkeyCores        float64
	APIPods, Brokers, Partitions, Aggregators, ValkeyPrimaries int
}

// Needs returns the cores each part needs for rate sales/s with
// replication copies of every record.
func Needs(rate float64, c Costs, replication int) (api, broker, aggregator, valkey float64) {
	return rate * c.APIUSPerSale / 1e6,
		rate * c.BrokerUSPerRecord * float64(max(replication, 1)) / 1e6,
		rate * c.AggregatorUSPerSale / 1e6,
		rate * c.ValkeyUSPerSale / 1e6
}

// Count returns how many units of perUnit cores each, filled to
// utilisation, hold cores: rounded up, at least one.
func Count(cores, perUnit, utilisation float64) int {
	if perUnit <= 0 || utilisation <= 0 {
		return 1
	}
	// The tolerance keeps an exact fit (1.2 cores into 1.2) from becoming
	// two through rounding error.
	n := int(math.Ceil(cores/(perUnit*utilisation) - 1e-9))
	return max(n, 1)
}

// Size plans for rate sales/s.
func Size(rate float64, c Costs, a Assumptions) (Plan, error) {
	if rate <= 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
		return Plan{}, fmt.Errorf("rate %v: want a positive number of sales/s", rate)
	}
	if a.Utilisation <= 0 || a.Utilisation > 1 {
		return Plan{}, fmt.Errorf("utilisation %v: want a share in (0, 1]", a.Utilisation)
	}
	p := Plan{Rate: rate}
	p.APICores, p.BrokerCores, p.AggregatorCores, p.ValkeyCores = Needs(rate, c, a.Replication)
	p.APIPods = Count(p.APICores, a.APICPU, a.Utilisation)
	p.Brokers = max(Count(p.BrokerCores, a.BrokerCPU, a.Utilisation), a.MinBrokers, a.Replication)
	p.Aggregators = Count(p.AggregatorCores, a.AggregatorCPU, a.Utilisation)
	p.ValkeyPrimaries = Count(p.ValkeyCores, a.ValkeyCPU, a.Utilisation)
	p.Partitions = Partitions(a.MinPartitions, p.Aggregators, p.Brokers)
	return p, nil
}

// Partitions is at least minimum and at least one per aggregator replica
// (a partition is consumed by one replica at a time, so a replica without
// one idles), rounded up to a multiple of the brokers so that leadership
// spreads evenly.
func Partitions(minimum, aggregators, brokers int) int {
	n := max(minimum, aggregators, brokers, 1)
	if brokers > 0 && n%brokers != 0 {
		n += brokers - n%brokers
	}
	return n
}
