package server

import (
	"context"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/auth"
)

// The REST paths of the course's API, which are writes.
const (
	pathVenta    = "/venta"
	pathProcesar = "/procesar"
)

// authPolicy decides which calls need a bearer token, and checks it. A nil
// *authPolicy, or one without tokens, lets every call through: that is the
// default, for development.
//
//   - Writes need a token: SalesService, and the course's ProductSaleService
//     and POST /venta and /procesar unless LegacyOpen.
//   - Reads need one only with ReadAuth: AnalyticsService and server
//     reflection.
//   - Health never does (Kubernetes' gRPC probes cannot send one), nor do
//     /healthz, /readyz and the dashboard's static files (public code; the
//     data it shows comes through AnalyticsService).
type authPolicy struct {
	tokens     *auth.Tokens
	reads      bool
	legacyOpen bool
}

// check returns nil when procedure (an RPC's path, or a REST path) may be
// called with the given Authorization header, and auth.ErrNoToken or
// auth.ErrBadToken otherwise.
func (p *authPolicy) check(procedure, header string) error {
	if !p.guards(procedure) {
		return nil
	}
	return p.tokens.Check(header)
}

// guards reports whether procedure needs a token.
func (p *authPolicy) guards(procedure string) bool {
	if p == nil || p.tokens == nil || p.tokens.Len() == 0 {
		return false
	}
	switch {
	case strings.HasPrefix(procedure, "/"+salesv1connect.SalesServiceName+"/"):
		return true
	case strings.HasPrefix(procedure, "/"+blackfridayconnect.ProductSaleServiceName+"/"),
		procedure == pathVenta, procedure == pathProcesar:
		return !p.legacyOpen
	case strings.HasPrefix(procedure, "/"+grpchealth.HealthV1ServiceName+"/"):
		return false
	default:
		// AnalyticsService, reflection, and whatever is added later: a
		// new read is guarded with the others, never forgotten.
		return p.reads
	}
}

// authInterceptor enforces the policy on every RPC, unary and streaming. For
// the write RPCs, admission already checked the token before reading the
// body; this check is what guards every other procedure (and a write handler
// mounted without admission). It runs inside the metrics interceptor, so
// refused calls are counted with the code unauthenticated, and inside the
// error mapping, which words the answer.
type authInterceptor struct {
	policy *authPolicy
}

// WrapUnary checks a unary call.
func (i authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := i.policy.check(req.Spec().Procedure, req.Header().Get("Authorization")); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient leaves clients alone; the server has none.
func (authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler checks a stream before it starts (WatchSummary with
// ReadAuth, and reflection).
func (i authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := i.policy.check(conn.Spec().Procedure, conn.RequestHeader().Get("Authorization")); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
