package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// defaultHistoryProducts is how many best-selling electronics products
// GetPriceHistory returns when the request names none.
const defaultHistoryProducts = 10

// GetPriceHistory returns the last prices of electronics products, oldest
// first, in request order, leaving out products without a history.
func (s *Service) GetPriceHistory(ctx context.Context, req *salesv1.GetPriceHistoryRequest) (*salesv1.GetPriceHistoryResponse, error) {
	resp := &salesv1.GetPriceHistoryResponse{}
	err := s.query(ctx, func(ctx context.Context, c rueidis.Client) error {
		ids := req.GetProductIds()
		if len(ids) == 0 {
			top, err := best(ctx, c, s.rank(salesv1.Category_CATEGORY_ELECTRONICS), defaultHistoryProducts)
			if err != nil {
				return err
			}
			for _, z := range top {
				ids = append(ids, z.Member)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		cmds := make(rueidis.Commands, len(ids))
		for i, id := range ids {
			cmds[i] = c.B().Zrange().Key(s.keys.Price(id)).Min("0").Max("-1").Build()
		}
		for i, r := range c.DoMulti(ctx, cmds...) {
			members, err := r.AsStrSlice()
			if err != nil {
				return storeErr(err)
			}
			if len(members) == 0 {
				continue
			}
			h := &salesv1.ProductPriceHistory{ProductId: ids[i], Points: make([]*salesv1.PricePoint, len(members))}
			for j, m := range members {
				p, err := pricePoint(m)
				if err != nil {
					return err
				}
				h.Points[j] = p
			}
			resp.Products = append(resp.Products, h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// pricePoint parses a price history member (keys.PriceMember).
func pricePoint(member string) (*salesv1.PricePoint, error) {
	ms, cents, saleID, err := keys.ParsePriceMember(member)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return &salesv1.PricePoint{
		SoldAt:     timestamppb.New(time.UnixMilli(ms)),
		PriceCents: cents,
		SaleId:     saleID,
	}, nil
}
