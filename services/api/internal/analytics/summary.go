package analytics

import (
	"context"

	"github.com/redis/rueidis"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// statFields are the hash fields of the totals and category hashes, in the
// order summaries read them; the totals hash has dead letters as well.
func statFields() []string {
	return []string{
		keys.FieldSales, keys.FieldUnits, keys.FieldRevenueCents, keys.FieldPriceSumCents,
		keys.FieldMinPriceCents, keys.FieldMaxPriceCents, keys.FieldDeadLetters,
	}
}

// stats is one HMGET of statFields.
type stats struct {
	sales, units, revenue, priceSum, minPrice, maxPrice, deadLetters int64
}

func statsOf(v []int64) stats {
	v = append(v, make([]int64, 7)...) // tolerate a short reply
	return stats{v[0], v[1], v[2], v[3], v[4], v[5], v[6]}
}

// GetSummary returns the totals per category and overall, the price range and
// the best and worst sellers, in one round trip to Valkey (two when a tie for
// best seller is wider than the slack read).
func (s *Service) GetSummary(ctx context.Context, _ *salesv1.GetSummaryRequest) (*salesv1.GetSummaryResponse, error) {
	cats := keys.Categories()
	// Rankings: index 0 is all products, then one per category.
	rankCats := append([]salesv1.Category{salesv1.Category_CATEGORY_UNSPECIFIED}, cats...)

	var (
		total    stats
		perCat   = make([]stats, len(cats))
		bests    = make([]*salesv1.ProductUnits, len(rankCats))
		worsts   = make([]*salesv1.ProductUnits, len(rankCats))
		fields   = statFields()
		catField = fields[:6]
	)
	err := s.query(ctx, func(ctx context.Context, c rueidis.Client) error {
		cmds := make(rueidis.Commands, 0, 1+len(cats)+2*len(rankCats))
		cmds = append(cmds, c.B().Hmget().Key(s.keys.Totals()).Field(fields...).Build())
		for _, cat := range cats {
			cmds = append(cmds, c.B().Hmget().Key(s.keys.Category(cat)).Field(catField...).Build())
		}
		for _, cat := range rankCats {
			key := s.rank(cat)
			cmds = append(cmds, bestRead(c, key, 1), worstRead(c, key, 1))
		}
		replies := c.DoMulti(ctx, cmds...)

		v, err := int64s(replies[0])
		if err != nil {
			return storeErr(err)
		}
		total = statsOf(v)
		for i := range cats {
			v, err := int64s(replies[1+i])
			if err != nil {
				return storeErr(err)
			}
			perCat[i] = statsOf(v)
		}

		type tie struct {
			rank  int
			top   []rueidis.ZScore
			count int
		}
		var ties []tie
		for i := range rankCats {
			r := replies[1+len(cats)+2*i:]
			read, err := r[0].AsZScores()
			if err != nil {
				return storeErr(err)
			}
			top, n := bestOf(read, 1)
			if n > 0 {
				ties = append(ties, tie{i, top, n})
			} else if len(top) > 0 {
				bests[i] = productUnits(top[0])
			}
			worst, err := r[1].AsZScores()
			if err != nil {
				return storeErr(err)
			}
			if len(worst) > 0 {
				worsts[i] = productUnits(worst[0])
			}
		}
		if len(ties) == 0 {
			return nil
		}
		// Rare: more products tie for best seller than the slack read.
		cmds = cmds[:0]
		for _, t := range ties {
			cmds = append(cmds, tieRead(c, s.rank(rankCats[t.rank]), t.top[0].Score, t.count))
		}
		for i, r := range c.DoMulti(ctx, cmds...) {
			lowest, err := r.AsZScores()
			if err != nil {
				return storeErr(err)
			}
			if top := fixTie(ties[i].top, lowest); len(top) > 0 {
				bests[ties[i].rank] = productUnits(top[0])
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	resp := &salesv1.GetSummaryResponse{
		Categories:    make([]*salesv1.CategorySummary, len(cats)),
		MinPriceCents: total.minPrice,
		MaxPriceCents: total.maxPrice,
		BestSeller:    bests[0],
		WorstSeller:   worsts[0],
		Sales:         total.sales,
		Units:         total.units,
		RevenueCents:  total.revenue,
		DeadLetters:   total.deadLetters,
	}
	for i, cat := range cats {
		st := perCat[i]
		cs := &salesv1.CategorySummary{
			Category:      cat,
			Sales:         st.sales,
			Units:         st.units,
			RevenueCents:  st.revenue,
			MinPriceCents: st.minPrice,
			MaxPriceCents: st.maxPrice,
			BestSeller:    bests[1+i],
			WorstSeller:   worsts[1+i],
			PriceSumCents: st.priceSum,
		}
		if st.sales > 0 {
			// One division each, of exact integer sums.
			cs.AvgPriceCents = float64(st.priceSum) / float64(st.sales)
			cs.AvgQuantity = float64(st.units) / float64(st.sales)
		}
		resp.Categories[i] = cs
	}
	return resp, nil
}
