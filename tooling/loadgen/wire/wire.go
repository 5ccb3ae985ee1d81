// Package wire counts the bytes a client sends and receives over TCP: the
// bytes on the wire above TCP, so HTTP headers, HTTP/2 frames, gRPC
// envelopes and connection set-up are all counted, as a protocol pays them.
package wire

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// Counter counts the bytes through every connection it dials.
type Counter struct {
	sent, received, conns atomic.Int64
	dialer                net.Dialer
}

// NewCounter returns a counter whose dialer times out after timeout.
func NewCounter(timeout time.Duration) *Counter {
	return &Counter{dialer: net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}}
}

// Totals is a snapshot of a counter.
type Totals struct {
	Sent, Received, Conns int64
}

// Sub returns t - o.
func (t Totals) Sub(o Totals) Totals {
	return Totals{Sent: t.Sent - o.Sent, Received: t.Received - o.Received, Conns: t.Conns - o.Conns}
}

// Totals returns the bytes counted so far and the connections dialed.
func (c *Counter) Totals() Totals {
	return Totals{Sent: c.sent.Load(), Received: c.received.Load(), Conns: c.conns.Load()}
}

// DialContext dials like net.Dialer and counts the connection's bytes. It
// fits http.Transport.DialContext.
func (c *Counter) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.conns.Add(1)
	return &countingConn{Conn: conn, c: c}, nil
}

// Wrap counts the bytes of an existing connection.
func (c *Counter) Wrap(conn net.Conn) net.Conn {
	c.conns.Add(1)
	return &countingConn{Conn: conn, c: c}
}

type countingConn struct {
	net.Conn
	c *Counter
}

func (cc *countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.received.Add(int64(n))
	return n, err
}

func (cc *countingConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.sent.Add(int64(n))
	return n, err
}
