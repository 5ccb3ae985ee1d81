package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

type protocolKey struct{}

// WithProtocol returns a context that records the ingest protocol of the
// call, which its records carry in their ingest-protocol header. The edge
// sets it once per request, where the transport is known.
func WithProtocol(ctx context.Context, p record.Protocol) context.Context {
	return context.WithValue(ctx, protocolKey{}, p)
}

// ProtocolFrom returns the ingest protocol set by WithProtocol, or
// record.ProtocolUnknown.
func ProtocolFrom(ctx context.Context) record.Protocol {
	if p, ok := ctx.Value(protocolKey{}).(record.Protocol); ok {
		return p
	}
	return record.ProtocolUnknown
}

// Stamp fills in what the server assigns: a UUIDv7 sale_id when the client
// sent none, and sold_at set to receivedAt when it is missing. Every record
// on the topic carries both, so the aggregator never has to invent them.
func Stamp(sale *salesv1.Sale, receivedAt time.Time) error {
	if sale.GetSaleId() == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("assign sale id: %w", err)
		}
		sale.SaleId = id.String()
	}
	if sale.GetSoldAt() == nil {
		sale.SoldAt = timestamppb.New(receivedAt)
	}
	return nil
}
