package server

import (
	"fmt"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec Marshal delegates to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	legacypb "blackfriday.local/gen/blackfriday"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// grpcCodec is the grpc-go server's codec. It decodes as codec.go's codecs
// do on the connect-go server: SalesService's requests reject unknown
// fields, the ingest requests reject 32-bit fields that overflow.
//
// grpc-go answers a message that fails to decode with internal, whatever
// the codec says; a bad message is the client's fault, so the codec
// reports success and keeps the failure, as invalid_argument naming what
// is wrong, for the edge to take (grpcEdge.unary, edgeStream.RecvMsg) and
// answer once the call was admitted. Every message grpc-go decodes reaches
// the edge, so no failure is kept for long.
type grpcCodec struct {
	base     encoding.CodecV2
	strict   protoCodec
	lenient  protoCodec
	failures sync.Map // proto.Message -> *connect.Error
}

func newGRPCCodec() *grpcCodec {
	return &grpcCodec{
		base:   encoding.GetCodecV2("proto"),
		strict: protoCodec{rejectUnknown: true},
	}
}

// Name is the codec grpc-go's clients name: proto.
func (c *grpcCodec) Name() string { return "proto" }

func (c *grpcCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c *grpcCodec) Unmarshal(data mem.BufferSlice, v any) error {
	pm, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", v)
	}
	b := data.Materialize()
	var err error
	switch pm.(type) {
	case *salesv1.RecordSaleRequest, *salesv1.RecordSalesRequest:
		err = c.strict.Unmarshal(b, pm)
	case *legacypb.ProductSaleRequest:
		err = c.lenient.Unmarshal(b, pm)
	default:
		if err = proto.Unmarshal(b, pm); err != nil {
			err = fmt.Errorf("unmarshal into %T: %w", pm, err)
		}
	}
	if err != nil {
		c.failures.Store(pm, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("unmarshal message: %w", err)))
	}
	return nil
}

// take returns, and forgets, the failure to decode msg; nil if it decoded.
func (c *grpcCodec) take(msg any) error {
	if v, ok := c.failures.LoadAndDelete(msg); ok {
		return v.(*connect.Error)
	}
	return nil
}
