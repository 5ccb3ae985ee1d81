package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// The record contract the aggregator decodes: the value is a protobuf-binary
// salesv1.Sale, described by these headers.
const (
	HeaderContentType    = "content-type"
	HeaderSchema         = "schema"
	HeaderIngestProtocol = "ingest-protocol"

	ContentTypeProtobuf = "application/x-protobuf"
	SchemaSale          = "blackfriday.sales.v1.Sale"
)

// Protocol names the API a sale arrived through. It travels in the record's
// ingest-protocol header so that the aggregates can show the ingest mix.
type Protocol string

// The ingest protocols.
const (
	ProtocolConnectJSON  Protocol = "connect+json"
	ProtocolConnectProto Protocol = "connect+proto"
	ProtocolGRPC         Protocol = "grpc"
	ProtocolGRPCWeb      Protocol = "grpc-web"
	ProtocolLegacyREST   Protocol = "legacy-rest"
	ProtocolLegacyGRPC   Protocol = "legacy-grpc"
	ProtocolUnknown      Protocol = "unknown"
)

// protocols lists every Protocol, so the producer can prepare their header
// values once.
func protocols() []Protocol {
	return []Protocol{
		ProtocolConnectJSON, ProtocolConnectProto, ProtocolGRPC, ProtocolGRPCWeb,
		ProtocolLegacyREST, ProtocolLegacyGRPC, ProtocolUnknown,
	}
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
