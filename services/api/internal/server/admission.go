package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"blackfriday.local/services/api/internal/auth"
	"blackfriday.local/services/api/internal/ingest"
	"blackfriday.local/services/api/internal/legacy"
	"blackfriday.local/services/api/internal/metrics"
)

// The errors admission sheds calls with; errors.go maps them.
var (
	// errTooManyCalls means MaxInflightWrites calls are being served.
	errTooManyCalls = errors.New("too many write calls in flight")
	// errTooManyBytes means the request bodies being read and held by the
	// calls in flight add up to MaxInflightBytes.
	errTooManyBytes = errors.New("too many request bytes in flight")
)

// admission guards the write handlers (SalesService, the course's gRPC and
// REST APIs) before they read a byte of the request body:
//
//   - with authentication on, a call without an accepted bearer token is
//     refused at once (unauthenticated), so it never costs a body read, a
//     decode or a slot below;
//   - at most limit.Limit() calls are served at once, and the request bytes
//     they read and hold add up to at most maxBytes. A call beyond either
//     limit is answered resource_exhausted as soon as its headers are read:
//     it is never queued, so under overload the calls admitted keep their
//     latency and the others learn at once that they should back off.
//
// The call limit is MaxInflightWrites (limit.Fixed), or an adaptive limit
// below it (limit.Adaptive) that admission feeds with the latency of every
// call it let in, so that under overload it admits only as many as are
// answered near the target latency.
//
// Both limits bound memory whatever the load: the Kafka buffer bounds what
// admitted calls produce, and admission bounds the calls themselves and
// their bodies. A compressed body reserves MaxRequestBytes up front, since
// its decompressed size is unknown until it is read.
type admission struct {
	limit      limiter
	maxBytes   int64
	maxRequest int64
	calls      atomic.Int64
	bytes      atomic.Int64

	auth    *authPolicy
	metrics *metrics.Metrics
	// refusals are admission's answers, mapped once by errors.go and
	// encoded once per protocol: under overload most calls get one, so
	// each must cost next to nothing.
	refusals map[error]*refusal
	// over is the error a metered body fails with.
	over *connect.Error
}

// limiter decides how many write calls may be served at once: limit.Fixed
// or *limit.Adaptive.
type limiter interface {
	// Limit is the most calls that may be served at once; one atomic load
	// at most, since every call asks.
	Limit() int64
	// Observe learns that a call admitted with inflight calls served
	// (itself included) ended at end, latency after it arrived.
	Observe(end time.Time, latency time.Duration, inflight int64)
}

func newAdmission(calls limiter, maxBytes, maxRequest int64, policy *authPolicy, errs *errorMapper, m *metrics.Metrics) *admission {
	a := &admission{
		limit: calls, maxBytes: maxBytes, maxRequest: maxRequest,
		auth: policy, metrics: m, refusals: map[error]*refusal{},
	}
	for _, err := range []error{errTooManyCalls, errTooManyBytes, auth.ErrNoToken, auth.ErrBadToken} {
		a.refusals[err] = newRefusal(errs.toConnect(err))
	}
	a.over = errs.toConnect(errTooManyBytes)
	m.Gauge("bf_api_inflight_writes_limit", "The most write calls served at once: MAX_INFLIGHT_WRITES, or below it the adaptive limit (ADMISSION_MODE=adaptive).",
		func() float64 { return float64(a.limit.Limit()) })
	return a
}

// observedKey marks, in a request's context, whether the metrics interceptor
// counted the call. Calls that fail before the interceptors run (a body
// that does not decode, is too large, or runs out of byte budget) are
// counted by admission instead, so every write call is counted once.
type observedKey struct{}

// markObserved tells admission that the metrics interceptor counted the
// call.
func markObserved(ctx context.Context) {
	if flag, ok := ctx.Value(observedKey{}).(*atomic.Bool); ok {
		flag.Store(true)
	}
}

// rpcHandler guards a Connect handler (Connect, gRPC and gRPC-Web); the
// request's path is the procedure the auth policy judges.
func (a *admission) rpcHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		protocol := httpProtocol(r)
		inflight, err := a.admit(r, r.URL.Path)
		if err != nil {
			rf := a.refusals[err]
			rf.writeRPC(w, r)
			a.metrics.Observe(r.URL.Path, string(protocol), rf.code, time.Since(start))
			return
		}
		defer a.release(r)
		flag := new(atomic.Bool)
		sw := &outcomeWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), observedKey{}, flag)))
		code, end := sw.code(), time.Now()
		a.observe(start, end, inflight, code)
		if !flag.Load() {
			a.metrics.Observe(r.URL.Path, string(protocol), code, end.Sub(start))
		}
	})
}

// restHandler guards the course's REST API; reject writes the error in the
// course's JSON shape. Its metrics come from metrics.WrapHTTP around it.
func (a *admission) restHandler(procedure string, reject func(http.ResponseWriter, *connect.Error), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		inflight, err := a.admit(r, procedure)
		if err != nil {
			reject(w, a.refusals[err].ce)
			return
		}
		defer a.release(r)
		sw := &outcomeWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		a.observe(start, time.Now(), inflight, sw.code())
	})
}

// admit checks the token and takes a call slot and, for a compressed body,
// its byte reservation; it replaces r.Body with a metered one. It returns
// the calls in flight with this one. On success the caller must call
// release.
func (a *admission) admit(r *http.Request, procedure string) (int64, error) {
	if err := a.auth.check(procedure, r.Header.Get("Authorization")); err != nil {
		return 0, err
	}
	inflight := a.calls.Add(1)
	if inflight > a.limit.Limit() {
		a.calls.Add(-1)
		return 0, errTooManyCalls
	}
	body := &meteredBody{ReadCloser: r.Body, a: a}
	if compressed(r) {
		if !a.reserve(a.maxRequest) {
			a.calls.Add(-1)
			return 0, errTooManyBytes
		}
		body.reserved = a.maxRequest
	}
	body.over = a.over
	r.Body = body
	return inflight, nil
}

// release gives back what admit took, once the handler has returned (or
// panicked).
func (a *admission) release(r *http.Request) {
	if body, ok := r.Body.(*meteredBody); ok {
		a.bytes.Add(-(body.charged + body.reserved))
	}
	a.calls.Add(-1)
}

// observe tells the limiter how long an admitted call took, if that says
// something about load: a success, or a failure that waited on Kafka
// (unavailable, deadline_exceeded: a slow or absent broker held the slot
// that long). A call refused for its content answers without doing the
// work, so its latency would only flatter the limiter.
func (a *admission) observe(start, end time.Time, inflight int64, code string) {
	switch code {
	case "ok", "unavailable", "deadline_exceeded":
		a.limit.Observe(end, end.Sub(start), inflight)
	}
}

// reserve takes n bytes of the budget, or reports that they are not there.
func (a *admission) reserve(n int64) bool {
	if a.bytes.Add(n) > a.maxBytes {
		a.bytes.Add(-n)
		return false
	}
	return true
}

// compressed reports whether the request body is compressed, in any of the
// protocols' ways.
func compressed(r *http.Request) bool {
	for _, h := range []string{"Content-Encoding", "Grpc-Encoding", "Connect-Content-Encoding"} {
		if v := r.Header.Get(h); v != "" && !strings.EqualFold(v, "identity") {
			return true
		}
	}
	return false
}

// meteredBody charges every byte read to the admission's byte budget until
// the call ends. A read that would overdraw it fails with over, a Connect
// error that connect-go passes on to the client as it is.
type meteredBody struct {
	io.ReadCloser
	a        *admission
	over     error
	charged  int64
	reserved int64
}

func (b *meteredBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if !b.a.reserve(int64(n)) {
			return 0, b.over
		}
		b.charged += int64(n)
	}
	return n, err
}

// outcomeWriter remembers what a Connect handler answered, for the calls the
// metrics interceptor never saw.
type outcomeWriter struct {
	http.ResponseWriter
	status int
}

func (w *outcomeWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *outcomeWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *outcomeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush lets connect-go flush through the wrapper.
func (w *outcomeWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

// code is the Connect code of the answer: gRPC and gRPC-Web carry it in
// grpc-status (a trailers-only answer has it among the headers, the others
// among the trailers), Connect in the HTTP status.
func (w *outcomeWriter) code() string {
	h := w.Header()
	for _, key := range []string{"Grpc-Status", http.TrailerPrefix + "Grpc-Status"} {
		if v := h.Get(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 16 {
				return "unknown"
			}
			if n == 0 {
				return "ok"
			}
			return connect.Code(n).String()
		}
	}
	return metrics.CodeOfStatus(w.status)
}

// httpProtocol names the ingest protocol of a request from its headers, as
// protocolOf does for the calls that reach the interceptors.
func httpProtocol(r *http.Request) ingest.Protocol {
	if strings.HasPrefix(r.URL.Path, legacyPrefix) {
		return ingest.ProtocolLegacyGRPC
	}
	mt := mediaType(r)
	switch {
	case strings.HasPrefix(mt, "application/grpc-web"):
		return ingest.ProtocolGRPCWeb
	case strings.HasPrefix(mt, "application/grpc"):
		return ingest.ProtocolGRPC
	case mt == "application/json", mt == "application/connect+json":
		return ingest.ProtocolConnectJSON
	case mt == "application/proto", mt == "application/connect+proto":
		return ingest.ProtocolConnectProto
	}
	return ingest.ProtocolUnknown
}

// mediaType is the request's media type, lower case, without parameters:
// cheaper than mime.ParseMediaType, for the refusal path.
func mediaType(r *http.Request) string {
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	return strings.ToLower(strings.TrimSpace(ct))
}

// refusal is one of admission's answers, encoded for every protocol.
type refusal struct {
	ce   *connect.Error
	code string
	meta http.Header
	// grpcStatus and grpcMessage are the gRPC and gRPC-Web headers of a
	// trailers-only answer.
	grpcStatus, grpcMessage []string
	// connectStatus and connectBody are the Connect unary answer.
	connectStatus int
	connectBody   []byte
}

func newRefusal(ce *connect.Error) *refusal {
	body, _ := json.Marshal(map[string]string{"code": ce.Code().String(), "message": ce.Message()})
	return &refusal{
		ce:            ce,
		code:          ce.Code().String(),
		meta:          ce.Meta(),
		grpcStatus:    []string{strconv.Itoa(int(ce.Code()))},
		grpcMessage:   []string{grpcPercentEncode(ce.Message())},
		connectStatus: legacy.HTTPStatus(ce.Code()),
		connectBody:   body,
	}
}

var (
	jsonContentType = []string{"application/json"}
	noCache         = []string{"no-store"}
)

// writeRPC answers in the request's protocol, as connect-go's ErrorWriter
// would, with a gRPC trailers-only answer (status in the headers, one
// HTTP/2 frame) for gRPC and gRPC-Web, and Connect's JSON error otherwise.
func (rf *refusal) writeRPC(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k, v := range rf.meta {
		h[k] = v
	}
	mt := mediaType(r)
	if strings.HasPrefix(mt, "application/grpc") {
		h.Set("Content-Type", mt)
		h["Grpc-Status"] = rf.grpcStatus
		h["Grpc-Message"] = rf.grpcMessage
		w.WriteHeader(http.StatusOK)
		return
	}
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noCache
	w.WriteHeader(rf.connectStatus)
	_, _ = w.Write(rf.connectBody)
}

// grpcPercentEncode encodes a grpc-message as the gRPC protocol requires:
// bytes outside printable ASCII, and '%', as %XX.
func grpcPercentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
