package analytics

import (
	"strconv"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// keys names the Valkey keys of docs/valkey-keys.md under a prefix.
type keys struct{ prefix string }

func (k keys) totals() string                     { return k.prefix + "totals" }
func (k keys) category(c salesv1.Category) string { return k.prefix + "cat:" + categoryKey(c) }
func (k keys) rankAll() string                    { return k.prefix + "rank:units" }
func (k keys) price(productID string) string      { return k.prefix + "price:" + productID }
func (k keys) offsets() string                    { return k.prefix + "offsets" }
func (k keys) ingest() string                     { return k.prefix + "ingest" }

// rank is the units ranking of one category, or of all products when c is
// unspecified.
func (k keys) rank(c salesv1.Category) string {
	if c == salesv1.Category_CATEGORY_UNSPECIFIED {
		return k.rankAll()
	}
	return k.prefix + "rank:units:" + categoryKey(c)
}

// rate is the hash of one category's sales in the minute starting at the
// Unix second minute.
func (k keys) rate(c salesv1.Category, minute int64) string {
	return k.prefix + "rate:" + categoryKey(c) + ":" + strconv.FormatInt(minute, 10)
}

// categoryKey is the lower-case name a category has in keys.
func categoryKey(c salesv1.Category) string {
	switch c {
	case salesv1.Category_CATEGORY_ELECTRONICS:
		return "electronics"
	case salesv1.Category_CATEGORY_CLOTHING:
		return "clothing"
	case salesv1.Category_CATEGORY_HOME:
		return "home"
	case salesv1.Category_CATEGORY_BEAUTY:
		return "beauty"
	default:
		return "unspecified"
	}
}

// categories lists the categories in enum order.
func categories() []salesv1.Category {
	return []salesv1.Category{
		salesv1.Category_CATEGORY_ELECTRONICS,
		salesv1.Category_CATEGORY_CLOTHING,
		salesv1.Category_CATEGORY_HOME,
		salesv1.Category_CATEGORY_BEAUTY,
	}
}
