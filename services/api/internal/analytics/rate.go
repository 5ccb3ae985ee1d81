package analytics

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/keys"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

const (
	// defaultRateWindow is the window when the request sets none.
	defaultRateWindow = 5 * time.Minute
	// perSecondUpTo is the longest window served with one bucket per
	// second; longer ones get one per minute.
	perSecondUpTo = 15 * time.Minute
)

// counts is what sold in one bucket.
type counts struct{ sales, units, revenue int64 }

// GetSalesRate returns sales, units and revenue per bucket for each category,
// by sold_at, over the window ending now. The last bucket is the current,
// still filling, one.
func (s *Service) GetSalesRate(ctx context.Context, req *salesv1.GetSalesRateRequest) (*salesv1.GetSalesRateResponse, error) {
	window := req.GetWindow().AsDuration()
	if req.GetWindow() == nil || window <= 0 {
		window = defaultRateWindow
	}
	bucket := time.Second
	if window > perSecondUpTo {
		bucket = time.Minute
	}
	step := int64(bucket / time.Second)
	n := int64((window + bucket - 1) / bucket)
	last := s.now().Unix() / step * step
	first := last - (n-1)*step

	cats := keys.Categories()
	if c := req.GetCategory(); c != salesv1.Category_CATEGORY_UNSPECIFIED {
		cats = []salesv1.Category{c}
	}
	var series [][]counts
	err := s.query(ctx, func(ctx context.Context, c rueidis.Client) error {
		var err error
		if bucket == time.Second {
			series, err = s.perSecond(ctx, c, cats, first, last)
		} else {
			series, err = s.perMinute(ctx, c, cats, first, last)
		}
		return err
	})
	if err != nil {
		return nil, err
	}

	resp := &salesv1.GetSalesRateResponse{
		Bucket: durationpb.New(bucket),
		Series: make([]*salesv1.RateSeries, len(cats)),
	}
	for i, cat := range cats {
		points := make([]*salesv1.RatePoint, n)
		for j := range points {
			b := series[i][j]
			points[j] = &salesv1.RatePoint{
				Start:        timestamppb.New(time.Unix(first+int64(j)*step, 0)),
				Sales:        b.sales,
				Units:        b.units,
				RevenueCents: b.revenue,
			}
		}
		resp.Series[i] = &salesv1.RateSeries{Category: cat, Points: points}
	}
	return resp, nil
}

// perMinute reads the minute totals of each minute hash.
func (s *Service) perMinute(ctx context.Context, c rueidis.Client, cats []salesv1.Category, first, last int64) ([][]counts, error) {
	n := int((last-first)/60 + 1)
	cmds := make(rueidis.Commands, 0, len(cats)*n)
	for _, cat := range cats {
		for m := first; m <= last; m += 60 {
			cmds = append(cmds, c.B().Hmget().Key(s.keys.Rate(cat, m)).Field(keys.FieldSales, keys.FieldUnits, keys.FieldRevenueCents).Build())
		}
	}
	replies := c.DoMulti(ctx, cmds...)
	out := make([][]counts, len(cats))
	for i := range cats {
		out[i] = make([]counts, n)
		for j := range n {
			v, err := int64s(replies[i*n+j])
			if err != nil {
				return nil, storeErr(err)
			}
			if len(v) == 3 {
				out[i][j] = counts{v[0], v[1], v[2]}
			}
		}
	}
	return out, nil
}

// perSecond reads the per-second fields of every minute hash the window
// touches.
func (s *Service) perSecond(ctx context.Context, c rueidis.Client, cats []salesv1.Category, first, last int64) ([][]counts, error) {
	firstMinute, lastMinute := first/60*60, last/60*60
	minutes := int((lastMinute-firstMinute)/60 + 1)
	cmds := make(rueidis.Commands, 0, len(cats)*minutes)
	for _, cat := range cats {
		for m := firstMinute; m <= lastMinute; m += 60 {
			cmds = append(cmds, c.B().Hgetall().Key(s.keys.Rate(cat, m)).Build())
		}
	}
	replies := c.DoMulti(ctx, cmds...)
	n := int(last - first + 1)
	out := make([][]counts, len(cats))
	for i := range cats {
		out[i] = make([]counts, n)
		for j := range minutes {
			fields, err := replies[i*minutes+j].AsStrMap()
			if err != nil {
				return nil, storeErr(err)
			}
			minute := firstMinute + int64(j)*60
			for f, v := range fields {
				sec, name, ok := secondField(f, minute)
				if !ok || sec < first || sec > last {
					continue
				}
				x, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%w: rate field %s: %w", ErrCorrupt, name, err)
				}
				b := &out[i][sec-first]
				switch name {
				case keys.FieldSales:
					b.sales = x
				case keys.FieldUnits:
					b.units = x
				case keys.FieldRevenueCents:
					b.revenue = x
				}
			}
		}
	}
	return out, nil
}

// secondField splits a per-second field (keys.RateSecondField) of the
// minute hash starting at minute. The aggregator writes the Unix second,
// and an offset in the minute is read as well; they cannot be confused,
// since a Unix second below 60 is in 1970.
func secondField(field string, minute int64) (sec int64, name string, ok bool) {
	sec, name, ok = keys.CutRateSecondField(field)
	if !ok {
		return 0, "", false // a minute total
	}
	if sec < 60 {
		sec += minute
	}
	return sec, name, true
}
