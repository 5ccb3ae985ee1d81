package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/analytics"
	"blackfriday.local/services/api/internal/metrics"
)

// errDraining is the cause of a stream's cancellation when the server shuts
// down.
var errDraining = errors.New("server is shutting down")

// errTooManyClientWatchers means the client already holds as many
// WatchSummary streams as one client may.
var errTooManyClientWatchers = errors.New("too many summary watchers from one client")

// watchRetryAfter is the Retry-After of a WatchSummary refused for the
// number of streams: a slot frees only when a stream ends, which is
// seldom within a second, and a dashboard can wait a few.
const watchRetryAfter = "5"

// streamInterceptor does for streaming RPCs what the unary interceptors do
// for unary ones: it maps errors through the one error mapping and counts
// the call (its duration is the stream's lifetime). It also ends every
// stream when the server starts shutting down, since streams would
// otherwise hold the graceful shutdown until its deadline; their clients get
// unavailable, the code that says "reconnect, maybe elsewhere". It ends a
// stream the same way when its connection outlives its maximum age by the
// grace (connage.go). And it holds each client to its share of
// WatchSummary streams.
type streamInterceptor struct {
	errors   *errorMapper
	metrics  *metrics.Metrics
	draining context.Context
	watchers *watcherLimit
}

// watcherLimit caps the WatchSummary streams of each client. The hub
// (analytics) caps them all together; without this, one client could take
// every one of them and leave the dashboards of all others refused.
type watcherLimit struct {
	clients   clients
	streams   *shares
	perClient int64
	refused   atomic.Int64
}

func newWatcherLimit(who clients, perClient int64, m *metrics.Metrics) *watcherLimit {
	l := &watcherLimit{clients: who, streams: newShares(), perClient: perClient}
	m.Gauge("bf_api_watch_streams_client_limit", "The most WatchSummary streams one client may hold open (WATCH_MAX_STREAMS_PER_CLIENT).",
		func() float64 { return float64(perClient) })
	m.Counter("bf_api_watch_client_refusals_total", "WatchSummary streams refused because their client held WATCH_MAX_STREAMS_PER_CLIENT.",
		func() float64 { return float64(l.refused.Load()) })
	return l
}

// join counts one more stream for conn's client, or refuses it; on success
// the stream must call the returned leave when it ends.
func (l *watcherLimit) join(conn connect.StreamingHandlerConn) (leave func(), err error) {
	return l.joinFrom(conn.Peer().Addr, conn.RequestHeader())
}

// joinFrom is join for a stream from remoteAddr with header, whichever
// server took it.
func (l *watcherLimit) joinFrom(remoteAddr string, header http.Header) (leave func(), err error) {
	sh := l.streams.join(l.clients.key(remoteAddr, header))
	if !sh.take(1, l.perClient) {
		l.streams.leave(sh)
		l.refused.Add(1)
		return nil, errTooManyClientWatchers
	}
	return func() {
		sh.held.Add(-1)
		l.streams.leave(sh)
	}, nil
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
		if expired := connExpired(ctx); expired != nil {
			stopAged := context.AfterFunc(expired, func() { cancel(errConnAged) })
			defer stopAged()
		}

		leave, err := i.admit(conn)
		if err == nil {
			defer leave()
			err = next(ctx, conn)
		}
		code := "ok"
		if err != nil {
			err = i.toConnect(ctx, err)
			code = connect.CodeOf(err).String()
		}
		protocol := protocolOf(conn.Spec().Procedure, conn.RequestHeader(), func() url.Values { return conn.Peer().Query })
		i.metrics.Observe(conn.Spec().Procedure, string(protocol), code, time.Since(start))
		return err
	}
}

// admit counts a WatchSummary stream against its client's share, or
// refuses it; leave gives the share back.
func (i streamInterceptor) admit(conn connect.StreamingHandlerConn) (leave func(), err error) {
	if conn.Spec().Procedure != salesv1connect.AnalyticsServiceWatchSummaryProcedure {
		return func() {}, nil
	}
	return i.watchers.join(conn)
}

// toConnect maps a streaming handler's error.
func (i streamInterceptor) toConnect(ctx context.Context, err error) *connect.Error {
	switch {
	case errors.Is(context.Cause(ctx), errDraining):
		return connect.NewError(connect.CodeUnavailable, errors.New("server is shutting down; reconnect"))
	case errors.Is(context.Cause(ctx), errConnAged):
		return connect.NewError(connect.CodeUnavailable, errors.New("connection reached its maximum age; reconnect"))
	case errors.Is(err, analytics.ErrTooManyWatchers):
		ce := connect.NewError(connect.CodeResourceExhausted, errors.New("too many summary watchers; retry later"))
		ce.Meta().Set(RetryAfterKey, watchRetryAfter)
		return ce
	case errors.Is(err, errTooManyClientWatchers):
		ce := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
			"this client holds as many summary watchers as one client may (%d); close one or retry later", i.watchers.perClient))
		ce.Meta().Set(RetryAfterKey, watchRetryAfter)
		return ce
	}
	return i.errors.toConnect(err)
}
