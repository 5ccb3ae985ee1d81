package server

import (
	"context"
	"errors"
	"mime"
	"strings"
	"time"

	"connectrpc.com/connect"

	"blackfriday.local/services/api/internal/analytics"
	"blackfriday.local/services/api/internal/ingest"
	"blackfriday.local/services/api/internal/metrics"
)

// errDraining is the cause of a stream's cancellation when the server shuts
// down.
var errDraining = errors.New("server is shutting down")

// streamInterceptor does for streaming RPCs what the unary interceptors do
// for unary ones: it maps errors through the one error mapping and counts
// the call (its duration is the stream's lifetime). It also ends every
// stream when the server starts shutting down, since streams would
// otherwise hold the graceful shutdown until its deadline; their clients get
// unavailable, the code that says "reconnect, maybe elsewhere".
type streamInterceptor struct {
	errors   *errorMapper
	metrics  *metrics.Metrics
	draining context.Context
}

// WrapUnary leaves unary calls to the unary interceptors.
func (streamInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }

// WrapStreamingClient leaves clients alone; the server has none.
func (streamInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler wraps every streaming handler.
func (i streamInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		stop := context.AfterFunc(i.draining, func() { cancel(errDraining) })
		defer stop()

		err := next(ctx, conn)
		code := "ok"
		if err != nil {
			err = i.toConnect(ctx, err)
			code = connect.CodeOf(err).String()
		}
		i.metrics.Observe(conn.Spec().Procedure, string(streamProtocol(conn)), code, time.Since(start))
		return err
	}
}

// toConnect maps a streaming handler's error.
func (i streamInterceptor) toConnect(ctx context.Context, err error) *connect.Error {
	switch {
	case errors.Is(context.Cause(ctx), errDraining):
		return connect.NewError(connect.CodeUnavailable, errors.New("server is shutting down; reconnect"))
	case errors.Is(err, analytics.ErrTooManyWatchers):
		return connect.NewError(connect.CodeResourceExhausted, errors.New("too many summary watchers; retry later"))
	}
	return i.errors.toConnect(err)
}

// streamProtocol names the protocol and encoding a stream arrived through,
// as protocolOf does for unary calls.
func streamProtocol(conn connect.StreamingHandlerConn) ingest.Protocol {
	switch conn.Peer().Protocol {
	case connect.ProtocolGRPC:
		return ingest.ProtocolGRPC
	case connect.ProtocolGRPCWeb:
		return ingest.ProtocolGRPCWeb
	case connect.ProtocolConnect:
		mt, _, _ := mime.ParseMediaType(conn.RequestHeader().Get("Content-Type"))
		switch strings.TrimPrefix(mt, "application/connect+") {
		case "json":
			return ingest.ProtocolConnectJSON
		case "proto":
			return ingest.ProtocolConnectProto
		}
	}
	return ingest.ProtocolUnknown
}
