package analytics

import (
	"cmp"
	"context"
	"slices"
	"strconv"

	"github.com/redis/rueidis"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// Rankings are sorted sets of product ids scored by units, and ties are
// broken by product id, ascending, at both ends. ZRANGE already orders ties
// that way, so the worst sellers are one read. ZREVRANGE orders ties by
// descending id, so the best sellers are read with some slack (rankSlack
// extra entries) and re-sorted; only when a tie spans the end of what was
// read does a second read fetch the lowest ids of the tied score.
const rankSlack = 16

// bestRead is the command that reads the best n entries of a ranking, with
// slack.
func bestRead(c rueidis.Client, key string, n int) rueidis.Completed {
	return c.B().Zrevrange().Key(key).Start(0).Stop(int64(n + rankSlack - 1)).Withscores().Build()
}

// worstRead is the command that reads the worst n entries of a ranking.
func worstRead(c rueidis.Client, key string, n int) rueidis.Completed {
	return c.B().Zrange().Key(key).Min("0").Max(strconv.Itoa(n - 1)).Withscores().Build()
}

// bestOf orders what bestRead returned and keeps the best n. If the last kept
// score may continue past what was read, tie is the number of kept entries
// with that score, which must be replaced by the tie lowest ids of the score.
func bestOf(read []rueidis.ZScore, n int) (top []rueidis.ZScore, tie int) {
	complete := len(read) < n+rankSlack // the whole ranking was read
	slices.SortFunc(read, func(a, b rueidis.ZScore) int {
		if a.Score != b.Score {
			return cmp.Compare(b.Score, a.Score)
		}
		return cmp.Compare(a.Member, b.Member)
	})
	top = read[:min(n, len(read))]
	if complete || len(top) == 0 {
		return top, 0
	}
	last := top[len(top)-1].Score
	if read[len(read)-1].Score != last {
		return top, 0 // the tie ends within what was read
	}
	for _, z := range top {
		if z.Score == last {
			tie++
		}
	}
	return top, tie
}

// tieRead is the command that reads the tie lowest ids scored score.
func tieRead(c rueidis.Client, key string, score float64, tie int) rueidis.Completed {
	s := strconv.FormatFloat(score, 'f', -1, 64)
	return c.B().Zrange().Key(key).Min(s).Max(s).Byscore().Limit(0, int64(tie)).Withscores().Build()
}

// fixTie replaces the tied tail of top with the lowest ids of its score.
func fixTie(top, lowest []rueidis.ZScore) []rueidis.ZScore {
	return append(top[:len(top)-len(lowest)], lowest...)
}

// best reads the best n entries of a ranking: one round trip, or two when a
// tie crosses the slack.
func best(ctx context.Context, c rueidis.Client, key string, n int) ([]rueidis.ZScore, error) {
	read, err := c.Do(ctx, bestRead(c, key, n)).AsZScores()
	if err != nil {
		return nil, storeErr(err)
	}
	top, tie := bestOf(read, n)
	if tie == 0 {
		return top, nil
	}
	lowest, err := c.Do(ctx, tieRead(c, key, top[len(top)-1].Score, tie)).AsZScores()
	if err != nil {
		return nil, storeErr(err)
	}
	return fixTie(top, lowest), nil
}

func productUnits(z rueidis.ZScore) *salesv1.ProductUnits {
	return &salesv1.ProductUnits{ProductId: z.Member, Units: int64(z.Score)}
}

// rank is the units ranking of one category, or of all products when c is
// unspecified.
func (s *Service) rank(c salesv1.Category) string {
	if c == salesv1.Category_CATEGORY_UNSPECIFIED {
		return s.keys.RankUnits()
	}
	return s.keys.RankUnitsCategory(c)
}

// GetTopProducts ranks products by units sold, overall or in one category.
func (s *Service) GetTopProducts(ctx context.Context, req *salesv1.GetTopProductsRequest) (*salesv1.GetTopProductsResponse, error) {
	n := int(req.GetLimit())
	if n == 0 {
		n = 10
	}
	key := s.rank(req.GetCategory())
	var ranked []rueidis.ZScore
	err := s.query(ctx, func(ctx context.Context, c rueidis.Client) error {
		var err error
		if req.GetOrder() == salesv1.RankOrder_RANK_ORDER_WORST {
			ranked, err = c.Do(ctx, worstRead(c, key, n)).AsZScores()
			return storeErr(err)
		}
		ranked, err = best(ctx, c, key, n)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &salesv1.GetTopProductsResponse{Products: make([]*salesv1.ProductUnits, len(ranked))}
	for i, z := range ranked {
		resp.Products[i] = productUnits(z)
	}
	return resp, nil
}
