// Package keys is the Valkey key schema of docs/valkey-keys.md, shared by the
// aggregator, which writes the keys, and the api, which reads them: the key
// names under a prefix, the names of their hash fields, and the layout of
// the fields and members that hold more than a number.
package keys

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// DefaultPrefix is the prefix of every key unless configured otherwise.
// Dashboards name their keys with it.
const DefaultPrefix = "bf:"

// Keys names the keys under one prefix.
type Keys struct {
	prefix string
}

// New returns the key names under prefix, for example DefaultPrefix.
func New(prefix string) Keys { return Keys{prefix: prefix} }

// Prefix is the prefix of every key.
func (k Keys) Prefix() string { return k.prefix }

// Offsets is the hash of each partition's position: its next uncounted
// offset (OffsetField), the topic ID (TopicIDField) and the leader epoch
// (EpochField) it belongs to.
func (k Keys) Offsets() string { return k.prefix + "offsets" }

// Totals is the hash of figures over all categories.
func (k Keys) Totals() string { return k.prefix + "totals" }

// Category is the hash of one category's figures.
func (k Keys) Category(c salesv1.Category) string {
	return k.prefix + "cat:" + CategoryName(c)
}

// Ingest is the hash of sales counted per ingest protocol: its fields are
// the record.Protocol names.
func (k Keys) Ingest() string { return k.prefix + "ingest" }

// RankUnits is the sorted set of products by units over all categories.
func (k Keys) RankUnits() string { return k.prefix + "rank:units" }

// RankUnitsCategory is the sorted set of products by units in one category.
func (k Keys) RankUnitsCategory(c salesv1.Category) string {
	return k.RankUnits() + ":" + CategoryName(c)
}

// Price is the sorted set of an electronics product's last prices, members
// laid out by PriceMember.
func (k Keys) Price(productID string) string { return k.prefix + "price:" + productID }

// PriceIndex is the sorted set of electronics products with a price history,
// scored by their latest sale. It is not under "price:" because a product id
// may be any word, "products" included, and must not collide with it.
func (k Keys) PriceIndex() string { return k.prefix + "price-index" }

// Rate is the hash of one category's sales in the minute starting at the
// Unix second minute: the minute's figures, and each second's under
// RateSecondField.
func (k Keys) Rate(c salesv1.Category, minute int64) string {
	return k.ratePrefix(c) + strconv.FormatInt(minute, 10)
}

// RatePattern is the glob pattern (for SCAN MATCH) of every Rate key of one
// category.
func (k Keys) RatePattern(c salesv1.Category) string { return k.ratePrefix(c) + "*" }

func (k Keys) ratePrefix(c salesv1.Category) string {
	return k.prefix + "rate:" + CategoryName(c) + ":"
}

// RateLog is the capped stream of one category's per-batch deltas, with the
// fields FieldSales, FieldUnits and FieldRevenueCents.
func (k Keys) RateLog(c salesv1.Category) string {
	return k.prefix + "ratelog:" + CategoryName(c)
}

// Seen is the sorted set of the sale ids one partition counted recently,
// for dedup: one member per applied batch.
func (k Keys) Seen(topic string, partition int32) string {
	return k.prefix + "seen:" + OffsetField(topic, partition)
}

// The fields of the Totals and Category hashes. The Rate hashes and the
// RateLog streams have FieldSales, FieldUnits and FieldRevenueCents.
const (
	FieldSales         = "sales"
	FieldUnits         = "units"
	FieldRevenueCents  = "revenue_cents"
	FieldPriceSumCents = "price_sum_cents"
	FieldMinPriceCents = "min_price_cents"
	FieldMaxPriceCents = "max_price_cents"
	// FieldDeadLetters and FieldDuplicates are in Totals only.
	FieldDeadLetters = "dead_letters"
	FieldDuplicates  = "duplicates"
)

// OffsetField is the field of the offsets hash holding one partition's next
// uncounted offset.
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

// RateSecondField is the field of a Rate hash holding one second's figure
// named field (FieldSales, FieldUnits or FieldRevenueCents); second is the absolute Unix
// second.
func RateSecondField(second int64, field string) string {
	return strconv.FormatInt(second, 10) + ":" + field
}

// CutRateSecondField splits a field of a Rate hash written by
// RateSecondField. ok is false for the minute's own figures and for a field
// of any other shape.
func CutRateSecondField(f string) (second int64, field string, ok bool) {
	s, field, ok := strings.Cut(f, ":")
	if !ok {
		return 0, "", false
	}
	second, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, "", false
	}
	return second, field, true
}

// PriceMember is the member of a Price sorted set for one sale, scored by
// soldAtMillis: "{sold_at_ms}:{price_cents}:{sale_id}". The time and sale id
// keep two sales at the same price distinct.
func PriceMember(soldAtMillis, priceCents int64, saleID string) string {
	return strconv.FormatInt(soldAtMillis, 10) + ":" + strconv.FormatInt(priceCents, 10) + ":" + saleID
}

// ErrPriceMember is returned for a Price member not laid out by PriceMember.
var ErrPriceMember = errors.New("not a price history member")

// ParsePriceMember reads a member written by PriceMember. A sale id may
// itself hold colons, so only the first two separate fields.
func ParsePriceMember(member string) (soldAtMillis, priceCents int64, saleID string, err error) {
	parts := strings.SplitN(member, ":", 3)
	if len(parts) != 3 {
		return 0, 0, "", fmt.Errorf("%w: %d fields", ErrPriceMember, len(parts))
	}
	if soldAtMillis, err = strconv.ParseInt(parts[0], 10, 64); err != nil {
		return 0, 0, "", fmt.Errorf("%w: time: %w", ErrPriceMember, err)
	}
	if priceCents, err = strconv.ParseInt(parts[1], 10, 64); err != nil {
		return 0, 0, "", fmt.Errorf("%w: price: %w", ErrPriceMember, err)
	}
	return soldAtMillis, priceCents, parts[2], nil
}

// CategoryName returns the name of a category in keys: its enum name without
// the CATEGORY_ prefix, in lower case, for example "electronics".
func CategoryName(c salesv1.Category) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "CATEGORY_"))
}

// Categories lists the categories that have keys, by enum number: every
// value of salesv1.Category but CATEGORY_UNSPECIFIED.
func Categories() []salesv1.Category {
	values := salesv1.Category_CATEGORY_UNSPECIFIED.Descriptor().Values()
	out := make([]salesv1.Category, 0, values.Len())
	for i := range values.Len() {
		if c := salesv1.Category(values.Get(i).Number()); c != salesv1.Category_CATEGORY_UNSPECIFIED {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}
