package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"blackfriday.local/services/api/internal/auth"
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

// The errors a call's own client brought on. Their answers are built in
// newAdmission, since they quote the limits.
var (
	// errClientBytes means the request bodies of one client's calls in
	// flight add up to MaxInflightBytesPerClient.
	errClientBytes = errors.New("client's share of request bytes in flight taken")
	// errBodyLate means a body did not arrive within WriteBodyTimeout.
	errBodyLate = errors.New("request body too slow")
)

// admission guards the write handlers (SalesService, the course's gRPC and
// REST APIs), before they read a byte of the request body and while they
// read it:
//
//   - with authentication on, a call without an accepted bearer token is
//     refused at once (unauthenticated), so it never costs a body read, a
//     decode or a slot below;
//   - at most limit calls are served at once. A call beyond it is
//     answered resource_exhausted as soon as its headers are read: it is
//     never queued, so under overload the calls admitted keep their latency
//     and the others learn at once that they should back off;
//   - the request bytes the calls read and hold add up to at most
//     bytes.total, and those of one client's calls to at most
//     bytes.perClient (client.go says who a client is). A body is charged
//     as it is read, and a read that would pass either limit fails the call
//     with resource_exhausted;
//   - a body must arrive within bytes.bodyTimeout of admission, or the call
//     fails with deadline_exceeded.
//
// The limits bound memory whatever the load: the Kafka buffer bounds what
// admitted calls produce, and admission bounds the calls themselves and
// their bodies. A compressed message may decompress to MaxRequestBytes,
// which connect-go allocates only once the message has arrived whole
// (compression.go): so that is when its allowance is charged, and a
// compressed body that stalls holds only the bytes it sent. The body
// deadline frees what a stalled body holds long before UnaryTimeout would,
// and the per-client share keeps one client's stalled or oversized bodies
// from starving the others while they last.
type admission struct {
	// limit is MaxInflightWrites.
	limit int64
	bytes byteLimits
	calls atomic.Int64
	held  atomic.Int64
	// clients holds what each client's calls hold of the byte budget.
	clients *shares

	auth    *authPolicy
	metrics *metrics.Metrics
	// refusals are admission's answers, mapped once by errors.go: under
	// overload most calls get one.
	refusals map[error]*refusal
	// errorWriter writes a refusal in the call's protocol (gRPC, gRPC-Web
	// or Connect), as connect-go's handlers would.
	errorWriter *connect.ErrorWriter
	// shareRefusals and lateBodies count the calls cut for their client's
	// share and for their body's deadline.
	shareRefusals atomic.Int64
	lateBodies    atomic.Int64
}

// byteLimits are admission's limits on request bodies.
type byteLimits struct {
	// total bounds the bytes held by every call in flight
	// (MaxInflightBytes), perClient those of one client's calls.
	total, perClient int64
	// request bounds one body, and one message once decompressed
	// (MaxRequestBytes): the allowance a compressed message is charged.
	request int64
	// bodyTimeout bounds the time from admission to the body's end.
	bodyTimeout time.Duration
	// clients tells clients apart.
	clients clients
}

func newAdmission(calls int64, bytes byteLimits, policy *authPolicy, errs *errorMapper, m *metrics.Metrics) *admission {
	a := &admission{
		limit: calls, bytes: bytes, clients: newShares(),
		auth: policy, metrics: m, refusals: map[error]*refusal{},
		errorWriter: connect.NewErrorWriter(),
	}
	answers := map[error]*connect.Error{}
	for _, err := range []error{errTooManyCalls, errTooManyBytes, auth.ErrNoToken, auth.ErrBadToken} {
		answers[err] = errs.toConnect(err)
	}
	share := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"this client's calls in flight hold their share of request bytes (%d); retry with backoff", bytes.perClient))
	share.Meta().Set(RetryAfterKey, "1")
	answers[errClientBytes] = share
	answers[errBodyLate] = connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf(
		"the request body did not arrive within %v; send it in one go", bytes.bodyTimeout))
	for err, ce := range answers {
		// A refused write was never read whole, let alone written.
		ce.Meta().Set(SaleRecordedKey, recordedNo)
		a.refusals[err] = newRefusal(ce)
	}

	m.Gauge("bf_api_inflight_writes_limit", "The most write calls served at once (MAX_INFLIGHT_WRITES).",
		func() float64 { return float64(calls) })
	m.Gauge("bf_api_inflight_request_bytes_client_limit", "The most request bytes one client's write calls in flight may hold (MAX_INFLIGHT_BYTES_PER_CLIENT).",
		func() float64 { return float64(bytes.perClient) })
	m.Gauge("bf_api_inflight_request_bytes_top_client", "The most request bytes any one client's write calls in flight hold.",
		func() float64 { return float64(a.clients.top()) })
	m.Gauge("bf_api_write_clients", "Clients with write calls in flight.", func() float64 { return float64(a.clients.clients()) })
	m.Counter("bf_api_client_share_refusals_total", "Write calls cut because their client's calls held MAX_INFLIGHT_BYTES_PER_CLIENT.",
		func() float64 { return float64(a.shareRefusals.Load()) })
	m.Counter("bf_api_write_body_timeouts_total", "Write calls cut because their body did not arrive within WRITE_BODY_TIMEOUT.",
		func() float64 { return float64(a.lateBodies.Load()) })
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
		protocol := protocolOf(r.URL.Path, r.Header, r.URL.Query)
		body, err := a.admit(w, r, r.URL.Path, compressionOf(r))
		if err != nil {
			rf := a.refusals[err]
			for _, v := range rf.challenge {
				w.Header().Add(AuthenticateKey, v)
			}
			_ = a.errorWriter.Write(w, r, rf.rpc)
			a.metrics.Observe(r.URL.Path, string(protocol), rf.err.Code().String(), time.Since(start))
			return
		}
		defer a.release(body)
		flag := new(atomic.Bool)
		sw := &outcomeWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), observedKey{}, flag)))
		if !flag.Load() {
			a.metrics.Observe(r.URL.Path, string(protocol), sw.code(), time.Since(start))
		}
	})
}

// restHandler guards the course's REST API; reject writes the error in the
// course's JSON shape. Its metrics come from metrics.WrapHTTP around it.
func (a *admission) restHandler(procedure string, reject func(http.ResponseWriter, *connect.Error), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The course never compressed, and the handler refuses a body
		// that claims to be: nothing here is decompressed.
		body, err := a.admit(w, r, procedure, uncompressed)
		if err != nil {
			reject(w, a.refusals[err].err)
			return
		}
		defer a.release(body)
		next.ServeHTTP(w, r)
	})
}

// admit checks the token and takes a call slot, then replaces r.Body with
// a metered one, read under the body deadline, that comp says how to watch
// for compressed messages, and returns that body. On success the caller
// must release the body.
func (a *admission) admit(w http.ResponseWriter, r *http.Request, procedure string, comp compression) (*meteredBody, error) {
	if err := a.auth.check(procedure, r.Header.Get("Authorization")); err != nil {
		return nil, err
	}
	if a.calls.Add(1) > a.limit {
		a.calls.Add(-1)
		return nil, errTooManyCalls
	}
	rc := http.NewResponseController(w)
	// The deadline binds the body only: once it has ended, Go's HTTP/1.1
	// server lifts the connection's read deadline for its background read,
	// and on HTTP/2 it would only close a body already ended, so a call
	// waiting for Kafka is not cut by it. An error means the writer takes
	// no deadline (a test's recorder): the body is then bounded by nothing
	// but its size.
	_ = rc.SetReadDeadline(time.Now().Add(a.bytes.bodyTimeout))
	body := &meteredBody{
		ReadCloser: r.Body, a: a, rc: rc, comp: comp,
		share: a.clients.join(a.bytes.clients.key(r.RemoteAddr, r.Header)),
	}
	r.Body = body
	return body, nil
}

// admitMessage admits a write call whose message grpc-go has already read
// whole (it reads a message before any interceptor runs): size bytes of it,
// from the client at remoteAddr with header. It applies what still can
// apply: the token, the call slots, and the byte budget and client share,
// charged with the message at once. On success the caller must call
// release when the call ends. The error is admission's answer.
func (a *admission) admitMessage(procedure string, header http.Header, remoteAddr string, size int64) (release func(), err error) {
	if err := a.auth.check(procedure, header.Get("Authorization")); err != nil {
		return nil, a.refusals[err].err
	}
	if a.calls.Add(1) > a.limit {
		a.calls.Add(-1)
		return nil, a.refusals[errTooManyCalls].err
	}
	sh := a.clients.join(a.bytes.clients.key(remoteAddr, header))
	if err := a.take(sh, size); err != nil {
		a.clients.leave(sh)
		a.calls.Add(-1)
		return nil, a.refusals[err].err
	}
	return func() {
		a.held.Add(-size)
		sh.held.Add(-size)
		a.clients.leave(sh)
		a.calls.Add(-1)
	}, nil
}

// release gives back what admit took, once the handler has returned (or
// panicked).
func (a *admission) release(body *meteredBody) {
	a.held.Add(-body.held)
	body.share.held.Add(-body.held)
	a.clients.leave(body.share)
	a.calls.Add(-1)
}

// take charges n bytes to the budget and to the client's share, or reports
// which of them has no room: the budget first, so that a refusal names the
// client's share only when the server had room for the bytes.
func (a *admission) take(sh *share, n int64) error {
	if a.held.Add(n) > a.bytes.total {
		a.held.Add(-n)
		return errTooManyBytes
	}
	if !sh.take(n, a.bytes.perClient) {
		a.held.Add(-n)
		a.shareRefusals.Add(1)
		return errClientBytes
	}
	return nil
}

// meteredBody charges every byte read to the byte budget and the client's
// share until the call ends, and a compressed message's allowance once it
// is whole. A read that would overdraw either fails with resource_exhausted,
// and one past the body deadline with deadline_exceeded: Connect errors,
// which connect-go and the course's REST handler pass on to the client as
// they are.
type meteredBody struct {
	io.ReadCloser
	a     *admission
	rc    *http.ResponseController
	share *share
	comp  compression
	// held is what the call holds of the budget.
	held int64
	// read counts the bytes read; env follows gRPC envelopes.
	read int64
	env  envelopes
	// allowed: the decompression allowance is charged.
	allowed bool
	// failed is the error the body failed with, if it did: every later
	// read answers it again rather than read on.
	failed error
	// ended: the body has been read to its end.
	ended bool
}

func (b *meteredBody) Read(p []byte) (int, error) {
	if b.failed != nil {
		return 0, b.failed
	}
	n, err := b.ReadCloser.Read(p)
	b.ended = err == io.EOF
	if errors.Is(err, os.ErrDeadlineExceeded) {
		b.a.lateBodies.Add(1)
		return 0, b.fail(errBodyLate)
	}
	if n > 0 {
		if ferr := b.charge(int64(n)); ferr != nil {
			return 0, ferr
		}
		b.read += int64(n)
		// gRPC decompresses a message once it has its last byte: charge
		// the allowance before that byte is handed over.
		if !b.allowed && b.comp == enveloped && b.env.completes(p[:n]) {
			if ferr := b.allow(); ferr != nil {
				return 0, ferr
			}
		}
	}
	if err == io.EOF {
		// Connect decompresses a unary body once it has read it to the
		// end: charge the allowance before the end is handed over.
		if !b.allowed && b.comp == wholeBody && b.read > 0 {
			if ferr := b.allow(); ferr != nil {
				return 0, ferr
			}
		}
	}
	return n, err
}

// charge takes n bytes for the call. When they are not there the call is
// over, and the rest of its body is abandoned at once: closing a body still
// open reads on to drain it (Go's HTTP/1.1 server does, up to 256 KiB, for
// the connection's sake), which for a stalled body would hold the call, and
// all it holds, until the body deadline. Not once the body has ended,
// though: there is nothing left to abandon, and on HTTP/1.1 the server is
// then reading the connection in the background, where a deadline passed
// would cancel the connection's context, and with it every later call on
// the connection.
func (b *meteredBody) charge(n int64) error {
	if err := b.a.take(b.share, n); err != nil {
		if !b.ended {
			_ = b.rc.SetReadDeadline(time.Now())
		}
		return b.fail(err)
	}
	b.held += n
	return nil
}

// fail ends the body with admission's answer to err.
func (b *meteredBody) fail(err error) error {
	b.failed = b.a.refusals[err].err
	return b.failed
}

// allow charges the allowance of a compressed message: what it may
// decompress to. One is enough: connect-go decompresses the messages of a
// call one at a time, and a unary call has one.
func (b *meteredBody) allow() error {
	b.allowed = true
	return b.charge(b.a.bytes.request)
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

// refusal is one of admission's answers.
type refusal struct {
	// err is the answer whole: the REST handler writes it, and a body
	// whose read fails hands it to connect-go.
	err *connect.Error
	// rpc is err as admission gives it to connect-go's error writer, and
	// challenge its WWW-Authenticate, which admission puts in the headers
	// itself: the writer sends an error's metadata in gRPC trailers, where
	// HTTP forbids a challenge (RFC 9110, section 6.5.1) and Go drops it.
	rpc       *connect.Error
	challenge []string
}

func newRefusal(ce *connect.Error) *refusal {
	rf := &refusal{err: ce, rpc: ce, challenge: ce.Meta().Values(AuthenticateKey)}
	if rf.challenge != nil {
		rf.rpc = connect.NewError(ce.Code(), errors.New(ce.Message()))
		for k, v := range ce.Meta() {
			if k != http.CanonicalHeaderKey(AuthenticateKey) {
				rf.rpc.Meta()[k] = v
			}
		}
	}
	return rf
}
