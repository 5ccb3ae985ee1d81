package legacy

import (
	"context"

	legacypb "blackfriday.local/gen/blackfriday"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// Compile-time check that Service serves the course's gRPC service.
var _ blackfridayconnect.ProductSaleServiceHandler = (*Service)(nil)

// ProcesarVenta records a course sale. It answers estado "OK" only once Kafka
// has acknowledged the sale; every failure is an error status.
func (s *Service) ProcesarVenta(ctx context.Context, req *legacypb.ProductSaleRequest) (*legacypb.ProductSaleResponse, error) {
	cents, err := floatPriceCents(req.GetPrecio())
	if err != nil {
		return nil, err
	}
	sale := &salesv1.Sale{
		// The enums share their numbers; unknown values fail validation.
		Category:   salesv1.Category(req.GetCategoria()),
		ProductId:  req.GetProductoId(),
		PriceCents: cents,
		Quantity:   req.GetCantidadVendida(),
	}
	if _, err := s.record(ctx, sale); err != nil {
		return nil, err
	}
	return &legacypb.ProductSaleResponse{Estado: "OK"}, nil
}
