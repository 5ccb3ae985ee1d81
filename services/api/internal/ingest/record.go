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

// Protocol names the API a sale arrived through. It travels in the record's
// ingest-protocol header so that the aggregates can show the ingest mix.
type Protocol = record.Protocol

// The ingest protocols, as the record contract names them.
const (
	ProtocolConnectJSON  = record.ProtocolConnectJSON
	ProtocolConnectProto = record.ProtocolConnectProto
	ProtocolGRPC         = record.ProtocolGRPC
	ProtocolGRPCWeb      = record.ProtocolGRPCWeb
	ProtocolLegacyREST   = record.ProtocolLegacyREST
	ProtocolLegacyGRPC   = record.ProtocolLegacyGRPC
	ProtocolUnknown      = record.ProtocolUnknown
)

// protocols lists every Protocol, so the producer can prepare their header
// values once.
func protocols() []Protocol {
	return append(record.Protocols(), ProtocolUnknown)
}

type protocolKey struct{}

// WithProtocol returns a context that records the ingest protocol of the
// call. The edge sets it once per request, where the transport is known.
func WithProtocol(ctx context.Context, p Protocol) context.Context {
	return context.WithValue(ctx, protocolKey{}, p)
}

// ProtocolFrom returns the ingest protocol set by WithProtocol, or
// ProtocolUnknown.
func ProtocolFrom(ctx context.Context) Protocol {
	if p, ok := ctx.Value(protocolKey{}).(Protocol); ok {
		return p
	}
	return ProtocolUnknown
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
