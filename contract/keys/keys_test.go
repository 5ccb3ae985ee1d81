package keys_test

import (
	"errors"
	"slices"
	"testing"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// TestNames pins the key names of docs/valkey-keys.md: dashboards, scripts
// and stored data depend on them.
func TestNames(t *testing.T) {
	t.Parallel()
	k := keys.New(keys.DefaultPrefix)
	elec, beauty := salesv1.Category_CATEGORY_ELECTRONICS, salesv1.Category_CATEGORY_BEAUTY
	for _, tc := range []struct{ got, want string }{
		{keys.DefaultPrefix, "bf:"},
		{k.Prefix(), "bf:"},
		{k.Offsets(), "bf:offsets"},
		{k.Totals(), "bf:totals"},
		{k.Category(elec), "bf:cat:electronics"},
		{k.Category(beauty), "bf:cat:beauty"},
		{k.Ingest(), "bf:ingest"},
		{k.RankUnits(), "bf:rank:units"},
		{k.RankUnitsCategory(salesv1.Category_CATEGORY_HOME), "bf:rank:units:home"},
		{k.Price("P:1"), "bf:price:P:1"},
		{k.PriceIndex(), "bf:price-index"},
		{k.Rate(salesv1.Category_CATEGORY_CLOTHING, 1764331260), "bf:rate:clothing:1764331260"},
		{k.RatePattern(salesv1.Category_CATEGORY_CLOTHING), "bf:rate:clothing:*"},
		{k.RateLog(elec), "bf:ratelog:electronics"},
		{k.Seen("sales", 7), "bf:seen:sales:7"},
		{keys.New("t1:").Totals(), "t1:totals"},
		{keys.OffsetField("sales", 11), "sales:11"},
		{keys.TopicIDField("sales", 11), "sales:11:topic-id"},
		{keys.EpochField("sales", 11), "sales:11:epoch"},
		{keys.RateSecondField(1764331261, keys.FieldUnits), "1764331261:units"},
		{keys.PriceMember(1764331261123, 19999, "id:with:colons"), "1764331261123:19999:id:with:colons"},
	} {
		if tc.got != tc.want {
			t.Errorf("key = %q, want %q", tc.got, tc.want)
		}
	}
	for _, tc := range []struct{ got, want string }{
		{keys.FieldSales, "sales"},
		{keys.FieldUnits, "units"},
		{keys.FieldRevenueCents, "revenue_cents"},
		{keys.FieldPriceSumCents, "price_sum_cents"},
		{keys.FieldMinPriceCents, "min_price_cents"},
		{keys.FieldMaxPriceCents, "max_price_cents"},
		{keys.FieldDeadLetters, "dead_letters"},
		{keys.FieldDuplicates, "duplicates"},
	} {
		if tc.got != tc.want {
			t.Errorf("field = %q, want %q", tc.got, tc.want)
		}
	}
}

func TestCategories(t *testing.T) {
	t.Parallel()
	want := []salesv1.Category{
		salesv1.Category_CATEGORY_ELECTRONICS, salesv1.Category_CATEGORY_CLOTHING,
		salesv1.Category_CATEGORY_HOME, salesv1.Category_CATEGORY_BEAUTY,
	}
	if got := keys.Categories(); !slices.Equal(got, want) {
		t.Errorf("Categories() = %v, want %v", got, want)
	}
	names := map[salesv1.Category]string{
		salesv1.Category_CATEGORY_UNSPECIFIED: "unspecified",
		salesv1.Category_CATEGORY_ELECTRONICS: "electronics",
		salesv1.Category_CATEGORY_CLOTHING:    "clothing",
		salesv1.Category_CATEGORY_HOME:        "home",
		salesv1.Category_CATEGORY_BEAUTY:      "beauty",
	}
	for c, want := range names {
		if got := keys.CategoryName(c); got != want {
			t.Errorf("CategoryName(%v) = %q, want %q", c, got, want)
		}
	}
}

func TestCutRateSecondField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		field  string
		second int64
		name   string
		ok     bool
	}{
		{keys.RateSecondField(1764331261, keys.FieldRevenueCents), 1764331261, keys.FieldRevenueCents, true},
		{"3:sales", 3, keys.FieldSales, true},
		{keys.FieldSales, 0, "", false},
		{"x:sales", 0, "", false},
	} {
		second, name, ok := keys.CutRateSecondField(tc.field)
		if second != tc.second || name != tc.name || ok != tc.ok {
			t.Errorf("CutRateSecondField(%q) = %d, %q, %v, want %d, %q, %v", tc.field, second, name, ok, tc.second, tc.name, tc.ok)
		}
	}
}

func TestParsePriceMember(t *testing.T) {
	t.Parallel()
	ms, cents, id, err := keys.ParsePriceMember(keys.PriceMember(1764331261123, 19999, "0199:a"))
	if err != nil || ms != 1764331261123 || cents != 19999 || id != "0199:a" {
		t.Errorf("ParsePriceMember(PriceMember(…)) = %d, %d, %q, %v, want 1764331261123, 19999, \"0199:a\", nil", ms, cents, id, err)
	}
	for _, m := range []string{"", "1:2", "x:2:id", "1:x:id"} {
		if _, _, _, err := keys.ParsePriceMember(m); !errors.Is(err, keys.ErrPriceMember) {
			t.Errorf("ParsePriceMember(%q) error = %v, want ErrPriceMember", m, err)
		}
	}
}
