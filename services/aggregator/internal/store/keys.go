package store

import (
	"strconv"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"

	"blackfriday.local/services/aggregator/internal/aggregate"
)

// Keys names the Valkey keys of docs/valkey-keys.md under one prefix.
type Keys struct {
	prefix string
}

// NewKeys returns the key names under prefix, for example "bf:".
func NewKeys(prefix string) Keys { return Keys{prefix: prefix} }

// Prefix is the prefix of every key.
func (k Keys) Prefix() string { return k.prefix }

// Offsets is the hash of each partition's next uncounted offset.
func (k Keys) Offsets() string { return k.prefix + "offsets" }

// Totals is the hash of figures over all categories.
func (k Keys) Totals() string { return k.prefix + "totals" }

// Category is the hash of one category's figures.
func (k Keys) Category(c salesv1.Category) string {
	return k.prefix + "cat:" + aggregate.CategoryName(c)
}

// Ingest is the hash of sales counted per ingest protocol.
func (k Keys) Ingest() string { return k.prefix + "ingest" }

// RankUnits is the sorted set of products by units over all categories.
func (k Keys) RankUnits() string { return k.prefix + "rank:units" }

// RankUnitsCategory is the sorted set of products by units in one category.
func (k Keys) RankUnitsCategory(c salesv1.Category) string {
	return k.prefix + "rank:units:" + aggregate.CategoryName(c)
}

// Price is the sorted set of an electronics product's last prices.
func (k Keys) Price(productID string) string { return k.prefix + "price:" + productID }

// PriceIndex is the sorted set of electronics products with a price history,
// scored by their latest sale. It is not under "price:" because a product id
// may be any word, "products" included, and must not collide with it.
func (k Keys) PriceIndex() string { return k.prefix + "price-index" }

// Rate is the hash of one category's sales in the minute starting at the
// Unix second minute.
func (k Keys) Rate(c salesv1.Category, minute int64) string {
	return k.prefix + "rate:" + aggregate.CategoryName(c) + ":" + strconv.FormatInt(minute, 10)
}

// RateLog is the capped stream of one category's per-batch deltas.
func (k Keys) RateLog(c salesv1.Category) string {
	return k.prefix + "ratelog:" + aggregate.CategoryName(c)
}

// Seen is the sorted set of the sale ids one partition counted recently:
// one member per applied batch, holding the 16-byte aggregate.SaleKey and
// record timestamp of each sale it counted, scored by the newest of those
// timestamps (see aggregate.Delta.SeenBlob).
func (k Keys) Seen(topic string, partition int32) string {
	return k.prefix + "seen:" + OffsetField(topic, partition)
}

// OffsetField is the field of the offsets hash for one partition.
func OffsetField(topic string, partition int32) string {
	return topic + ":" + strconv.FormatInt(int64(partition), 10)
}

// TopicIDField is the field of the offsets hash naming the incarnation of
// the topic a partition's offset belongs to: the Kafka topic ID. Kafka topic
// names cannot hold a colon, so it cannot be another topic's offset field.
func TopicIDField(topic string, partition int32) string {
	return OffsetField(topic, partition) + ":topic-id"
}

// EpochField is the field of the offsets hash holding the leader epoch of
// the last record a partition counted, as "{epoch}@{offset}": it is valid
// only while the offset field still holds {offset}, so that an offset moved
// by anything else (an older aggregator, an operator) never pairs with an
// epoch it does not belong to.
func EpochField(topic string, partition int32) string {
	return OffsetField(topic, partition) + ":epoch"
}
