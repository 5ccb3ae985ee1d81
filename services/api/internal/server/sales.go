package server

import (
	"context"
	"errors"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/ingest"
)

// Recorder writes complete, valid sales and returns once Kafka has
// acknowledged them. *ingest.Producer is the real one.
type Recorder interface {
	// Record writes one sale.
	Record(ctx context.Context, sale *salesv1.Sale) error
	// RecordAll writes sales in order, returning one error per sale.
	RecordAll(ctx context.Context, sales []*salesv1.Sale) []error
}

// salesService serves SalesService, on connect-go and on grpc-go alike.
// Requests reach it stamped (sale_id and sold_at set) and validated, by
// stampInterceptor and validateInterceptor, or by grpcEdge.
type salesService struct {
	salesv1connect.UnimplementedSalesServiceHandler
	salesv1.UnimplementedSalesServiceServer

	rec    Recorder
	errors *errorMapper
}

// RecordSale records one sale and returns once Kafka has acknowledged it.
func (s *salesService) RecordSale(ctx context.Context, req *salesv1.RecordSaleRequest) (*salesv1.RecordSaleResponse, error) {
	sale := req.GetSale()
	if err := s.rec.Record(ctx, sale); err != nil {
		return nil, err
	}
	return &salesv1.RecordSaleResponse{SaleId: sale.GetSaleId()}, nil
}

// RecordSales records a batch of sales, reporting a result per sale. When
// none was acknowledged the call fails, and the error still carries every
// sale's result (see batchFailure).
func (s *salesService) RecordSales(ctx context.Context, req *salesv1.RecordSalesRequest) (*salesv1.RecordSalesResponse, error) {
	sales := req.GetSales()
	errs := s.rec.RecordAll(ctx, sales)
	resp := &salesv1.RecordSalesResponse{Results: make([]*salesv1.SaleResult, len(sales))}
	var firstErr error
	for i, sale := range sales {
		r := &salesv1.SaleResult{SaleId: sale.GetSaleId(), Recorded: salesv1.Recorded_RECORDED_YES}
		if err := errs[i]; err != nil {
			ce := s.errors.toConnect(err)
			r.ErrorCode, r.ErrorMessage = ce.Code().String(), ce.Message()
			r.Recorded = recordedState(err)
			resp.Failed++
			if firstErr == nil {
				firstErr = err
			}
		} else {
			resp.Accepted++
		}
		resp.Results[i] = r
	}
	if resp.Accepted == 0 && firstErr != nil {
		return nil, s.errors.batchFailure(firstErr, resp)
	}
	return resp, nil
}

// recordedState says whether a failed sale was written: the producer knows,
// and says so in its *ingest.SaleError. Any other failure is not one it
// vouched for, so it may have been.
func recordedState(err error) salesv1.Recorded {
	if se := new(ingest.SaleError); errors.As(err, &se) && se.Unwritten {
		return salesv1.Recorded_RECORDED_NO
	}
	return salesv1.Recorded_RECORDED_UNKNOWN
}
