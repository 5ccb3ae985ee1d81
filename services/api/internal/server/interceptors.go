package server

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/ingest"
	"blackfriday.local/services/api/internal/metrics"
)

// metricsInterceptor counts every call by procedure, ingest protocol and
// final code, and times it.
func metricsInterceptor(m *metrics.Metrics) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			markObserved(ctx)
			resp, err := next(ctx, req)
			code := "ok"
			if err != nil {
				code = connect.CodeOf(err).String()
			}
			m.Observe(req.Spec().Procedure, string(requestProtocol(req)), code, time.Since(start))
			return resp, err
		}
	}
}

// protocolInterceptor records in the context which API and encoding a call
// arrived through; the producer writes it to the record's ingest-protocol
// header.
func protocolInterceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			return next(ingest.WithProtocol(ctx, requestProtocol(req)), req)
		}
	}
}

// requestProtocol is the ingest protocol of a unary call.
func requestProtocol(req connect.AnyRequest) record.Protocol {
	return protocolOf(req.Spec().Procedure, req.Header(), func() url.Values { return req.Peer().Query })
}

// errorInterceptor maps every error a handler returns through the one error
// mapping, so handlers return domain errors and never build Connect errors.
//
// A failed write always says whether its sale was written: the producer
// says it of every sale it was given, and a write that failed before
// reaching it (its deadline passed, its token or its fields were refused)
// was certainly not written.
func errorInterceptor(m *errorMapper) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			resp, err := next(ctx, req)
			if err != nil {
				return nil, m.forCall(req.Spec().Procedure, err)
			}
			return resp, nil
		}
	}
}

// forCall maps the error of a unary call to procedure, whichever server
// (connect-go or grpc-go) took the call.
func (m *errorMapper) forCall(procedure string, err error) *connect.Error {
	toConnect := m.toConnect
	if strings.HasPrefix(procedure, legacyPrefix) {
		toConnect = m.toCourseConnect
	}
	ce := toConnect(err)
	if isWrite(procedure) && ce.Meta().Get(SaleRecordedKey) == "" {
		ce.Meta().Set(SaleRecordedKey, recordedNo)
	}
	return ce
}

// isWrite reports whether procedure records sales: SalesService's methods
// and the course's ProcesarVenta.
func isWrite(procedure string) bool {
	return strings.HasPrefix(procedure, "/"+salesv1connect.SalesServiceName+"/") || strings.HasPrefix(procedure, legacyPrefix)
}

// stampInterceptor completes the sales of SalesService requests before they
// are validated: the server assigns a missing sale_id and sold_at, which the
// record contract requires. Stamping first means validation checks exactly
// what will be written, and an omitted sale_id is not judged against the
// sale_id pattern, which an empty string cannot match.
func stampInterceptor(now func() time.Time) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if err := stamp(req.Any(), now()); err != nil {
				return nil, err
			}
			return next(ctx, req)
		}
	}
}

// stamp completes the sales of a SalesService request received at
// received; other messages are left alone. Both servers stamp through it.
func stamp(msg any, received time.Time) error {
	var sales []*salesv1.Sale
	switch m := msg.(type) {
	case *salesv1.RecordSaleRequest:
		if m.GetSale() != nil {
			sales = []*salesv1.Sale{m.GetSale()}
		}
	case *salesv1.RecordSalesRequest:
		sales = m.GetSales()
	}
	for _, sale := range sales {
		if err := ingest.Stamp(sale, received); err != nil {
			return err
		}
	}
	return nil
}

// validateInterceptor checks every request against its protovalidate rules
// (validateMessage), unary and streamed, as connectrpc.com/validate would.
type validateInterceptor struct {
	v protovalidate.Validator
}

// WrapUnary checks a unary request.
func (i validateInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := validateMessage(i.v, req.Any()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient leaves clients alone; the server has none.
func (validateInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler checks each message a stream receives.
func (i validateInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(ctx, validatedConn{StreamingHandlerConn: conn, v: i.v})
	}
}

type validatedConn struct {
	connect.StreamingHandlerConn
	v protovalidate.Validator
}

func (c validatedConn) Receive(msg any) error {
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	return validateMessage(c.v, msg)
}

// validateMessage checks msg against its protovalidate rules: a violation
// is invalid_argument, naming the field, with the violations as the
// error's detail. Both servers validate through it.
func validateMessage(v protovalidate.Validator, msg any) error {
	pm, ok := msg.(proto.Message)
	if !ok || pm == nil {
		return nil
	}
	err := v.Validate(pm)
	if err == nil {
		return nil
	}
	ce := connect.NewError(connect.CodeInvalidArgument, err)
	if verr := new(protovalidate.ValidationError); errors.As(err, &verr) {
		if detail, derr := connect.NewErrorDetail(verr.ToProto()); derr == nil {
			ce.AddDetail(detail)
		}
	}
	return ce
}
