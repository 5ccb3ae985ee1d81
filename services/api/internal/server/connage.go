package server

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// ageJitter spreads connections' ages by this fraction either way, so that
// the connections a fleet of clients opened together (at a deploy, say) do
// not all go at once and redial in a storm.
const ageJitter = 0.1

// ageCloseDelay is the time between the end of a connection's grace, when
// its streams end, and its close: as Go's HTTP/2 server waits after a
// GOAWAY, so that the streams' last words (their status) reach the client.
const ageCloseDelay = time.Second

// errConnAged is the cause of a stream's end when its connection outlived
// its age by the grace.
var errConnAged = errors.New("connection reached its maximum age")

// ageLimit is a listener whose connections have a maximum age, as gRPC
// servers' MaxConnectionAge and MaxConnectionAgeGrace give them. A gRPC
// client multiplexes every call onto one long-lived HTTP/2 connection, so
// the replica it first reached gets all its calls for as long as the
// connection lasts: replicas added by the autoscaler, or restarted, would
// get none of them. Ending connections at an age makes clients dial again,
// and the Service spreads the new connections over the replicas there are
// then.
//
// A connection past its age (jittered by ageJitter) is asked to go on its
// next request: agedConns sets "Connection: close" on the response, which
// Go's HTTP/2 server turns into a graceful GOAWAY (the client finishes its
// calls in flight and opens its next ones on a new connection; Go's client
// retries on another connection the calls the server never saw), and after
// which HTTP/1.1 closes the connection. A connection that outlives its age
// by the grace (a stream that lasts, a call that hangs, or a connection
// that sent nothing since its age) has its streams ended with unavailable,
// the code that says "reconnect", and is closed ageCloseDelay later.
type ageLimit struct {
	net.Listener
	age, grace time.Duration
	counts     *ageCounts
}

// ageCounts count the connections told to go at their age, and those
// closed at its grace.
type ageCounts struct {
	aged   atomic.Int64
	closed atomic.Int64
}

// Accept returns the next connection, timed from now.
func (l *ageLimit) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	age := time.Duration(float64(l.age) * (1 - ageJitter + 2*ageJitter*rand.Float64()))
	expired, expire := context.WithCancel(context.Background())
	ac := &agingConn{Conn: c, deadline: time.Now().Add(age), counts: l.counts, expired: expired, expire: expire}
	ac.timer = time.AfterFunc(age+l.grace, ac.tick)
	return ac, nil
}

// agingConn is a connection with a deadline, closed after its grace.
type agingConn struct {
	net.Conn
	deadline time.Time
	counts   *ageCounts
	// expired is done when the grace ends: the streams on the connection
	// end then.
	expired context.Context
	expire  context.CancelFunc
	// timer fires twice: at the end of the grace (graceOver is then set),
	// and ageCloseDelay later, to close the connection.
	timer     *time.Timer
	graceOver atomic.Bool
	// told is set once the connection was asked to go; closed once it is
	// closed, by the server or after its grace.
	told, closed atomic.Bool
}

// tick ends the connection's streams at the end of its grace, and closes
// it at the next tick.
func (c *agingConn) tick() {
	if !c.graceOver.Swap(true) {
		c.expire()
		c.timer.Reset(ageCloseDelay)
		return
	}
	if c.closed.CompareAndSwap(false, true) {
		c.counts.closed.Add(1)
		_ = c.Conn.Close()
	}
}

// Close closes the connection and stops its timer, which would otherwise
// keep it in memory until it fired.
func (c *agingConn) Close() error {
	c.timer.Stop()
	c.closed.Store(true)
	return c.Conn.Close()
}

// aged reports whether the connection is past its age at now, counting it
// the first time.
func (c *agingConn) aged(now time.Time) bool {
	if now.Before(c.deadline) {
		return false
	}
	if c.told.CompareAndSwap(false, true) {
		c.counts.aged.Add(1)
	}
	return true
}

// agingConnKey is the context key of a request's agingConn.
type agingConnKey struct{}

// withAgingConn is the server's ConnContext: it lets the requests of a
// connection find its age.
func withAgingConn(ctx context.Context, c net.Conn) context.Context {
	if ac, ok := c.(*agingConn); ok {
		return context.WithValue(ctx, agingConnKey{}, ac)
	}
	return ctx
}

// agedConns asks the client of a connection past its age to go, with
// "Connection: close" on each response: HTTP/2 sends GOAWAY (once) and
// closes the connection when its last stream ends; HTTP/1.1 closes it after
// this response. A stream opened on such a connection runs on until the
// grace ends.
func agedConns(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(agingConnKey{}).(*agingConn); ok && c.aged(time.Now()) {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// connExpired returns what is done when the grace of the connection that
// carries ctx's request ends; nil when connections have no age.
func connExpired(ctx context.Context) context.Context {
	if c, ok := ctx.Value(agingConnKey{}).(*agingConn); ok {
		return c.expired
	}
	return nil
}
