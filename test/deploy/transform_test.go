package deploy_test

import (
	"encoding/json"
	"strings"
	"testing"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/test/deploy/internal/dashboard"
)

// TestAverageMistakesAreCaught shows the dashboard check rejecting the
// course dashboard's mistake (average price from the wrong series) and a
// misspelled series, next to the correct panel.
func TestAverageMistakesAreCaught(t *testing.T) {
	t.Parallel()
	cat := &aggregate{}
	cat.add(1000, 1) // $10 x1
	cat.add(3000, 3) // $30 x3: mean price $20, revenue $100, 4 units
	k := keys.New(keys.DefaultPrefix)
	tr := &truth{prefix: k.Prefix(), cats: map[string]*aggregate{keys.CategoryName(salesv1.Category_CATEGORY_HOME): cat}}
	raw := &dashboard.Frame{}
	for name, v := range cat.fields() {
		raw.Fields = append(raw.Fields, dashboard.Field{Name: name, Values: []any{v}})
	}
	calc := func(left, op, right, alias string, replace bool) dashboard.Transformation {
		b, _ := json.Marshal(map[string]any{"mode": "binary", "alias": alias, "replaceFields": replace,
			"binary": map[string]string{"left": left, "operator": op, "right": right}})
		return dashboard.Transformation{ID: "calculateField", Options: b}
	}
	tests := []struct {
		name    string
		ts      []dashboard.Transformation
		wantErr string // from the transformation, or from the truth
	}{
		{"price_sum_cents / sales (correct)", []dashboard.Transformation{calc("price_sum_cents", "/", "sales", "c", false), calc("c", "/", "100", "Average price", true)}, ""},
		{"revenue / units (the course's mistake)", []dashboard.Transformation{calc("revenue_cents", "/", "units", "c", false), calc("c", "/", "100", "Average price", true)}, "Average price"},
		{"units / sales (correct)", []dashboard.Transformation{calc("units", "/", "sales", "Average quantity", true)}, ""},
		{"sales / units (inverted)", []dashboard.Transformation{calc("sales", "/", "units", "Average quantity", true)}, "Average quantity"},
		{"misspelled series", []dashboard.Transformation{calc("price_sum_cent", "/", "sales", "Average price", true)}, "price_sum_cent"},
		{"both series misspelled", []dashboard.Transformation{calc("price_sum", "/", "sale", "Average price", true)}, "price_sum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			out, err := dashboard.Apply(raw, tt.ts)
			if err != nil {
				got = append(got, err.Error())
			} else {
				got = tr.problems("test", dashboard.Target{KeyName: k.Category(salesv1.Category_CATEGORY_HOME)}, raw, out)
			}
			joined := strings.Join(got, "; ")
			if tt.wantErr == "" && len(got) > 0 || tt.wantErr != "" && !strings.Contains(joined, tt.wantErr) {
				t.Errorf("check(%s) = %q, want a problem mentioning %q", tt.name, joined, tt.wantErr)
			}
		})
	}
}
