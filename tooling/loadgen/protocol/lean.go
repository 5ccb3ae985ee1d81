package protocol

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"connectrpc.com/connect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/tooling/loadgen/wire"
)

// newLean returns a client over the lean drivers (Config.Lean).
func newLean(cfg Config, batch int, counter *wire.Counter) (*Client, error) {
	if batch != 1 {
		return nil, fmt.Errorf("the lean %s client sends one sale per call, not a batch of %d", cfg.Protocol, batch)
	}
	u, err := url.Parse(cfg.Target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("target %q: want http://HOST:PORT", cfg.Target)
	}
	auth := ""
	if cfg.Token != "" {
		auth = "Bearer " + cfg.Token
	}
	conns := max(cfg.Conns, 1)
	c := &Client{name: cfg.Protocol, batch: 1, wire: counter}
	switch cfg.Protocol {
	case GRPC:
		g := &leanGRPC{addr: u.Host, auth: auth, dial: counter.DialContext, conns: make([]*h2Conn, conns)}
		c.send, c.close = g.send, g.close
	case ConnectJSON:
		j := &leanJSON{addr: u.Host, auth: auth, dial: counter.DialContext,
			slots: make(chan struct{}, conns), pool: make(chan *jsonConn, conns)}
		c.send, c.close = j.send, j.close
	default:
		return nil, fmt.Errorf("no lean client for %s (only %s and %s)", cfg.Protocol, GRPC, ConnectJSON)
	}
	return c, nil
}

// dialFunc dials a TCP connection; the wire counter's counts its bytes.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// leanJSON sends Connect JSON over a pool of plain HTTP/1.1 keep-alive
// connections, with hand-written requests.
type leanJSON struct {
	addr, auth string
	dial       dialFunc
	// slots bounds the connections open; pool holds the idle ones.
	slots chan struct{}
	pool  chan *jsonConn
}

type jsonConn struct {
	c  net.Conn
	br *bufio.Reader
}

func (j *leanJSON) close() {
	for {
		select {
		case c := <-j.pool:
			c.c.Close()
			<-j.slots
		default:
			return
		}
	}
}

// conn returns an idle connection, or dials one if fewer than the limit
// are open, or waits for one to be returned.
func (j *leanJSON) conn(ctx context.Context) (*jsonConn, error) {
	select {
	case c := <-j.pool:
		return c, nil
	default:
	}
	select {
	case c := <-j.pool:
		return c, nil
	case j.slots <- struct{}{}:
		conn, err := j.dial(ctx, "tcp", j.addr)
		if err != nil {
			<-j.slots
			return nil, err
		}
		return &jsonConn{c: conn, br: bufio.NewReader(conn)}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// drop closes a connection and frees its slot.
func (j *leanJSON) drop(c *jsonConn) {
	c.c.Close()
	<-j.slots
}

func (j *leanJSON) send(ctx context.Context, sales []*salesv1.Sale) Reply {
	c, err := j.conn(ctx)
	if err != nil {
		code := connect.CodeUnavailable
		if ctx.Err() != nil {
			code = connect.CodeDeadlineExceeded
		}
		return Reply{Code: code.String(), Err: err}
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = c.c.SetDeadline(deadline)
	}
	sale := sales[0]
	body := fmt.Sprintf(`{"sale":{"category":%d,"productId":%q,"priceCents":%d,"quantity":%d,"saleId":%q}}`,
		sale.GetCategory(), sale.GetProductId(), sale.GetPriceCents(), sale.GetQuantity(), sale.GetSaleId())
	auth := ""
	if j.auth != "" {
		auth = "Authorization: " + j.auth + "\r\n"
	}
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s",
		salesv1connect.SalesServiceRecordSaleProcedure, auth, len(body), body)
	if _, err := io.WriteString(c.c, req); err != nil {
		j.drop(c)
		return Reply{Code: connect.CodeUnavailable.String(), Err: err}
	}
	out := Reply{Wrote: time.Now()}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		j.drop(c)
		out.Code, out.Err = connect.CodeUnavailable.String(), err
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			out.Code = connect.CodeDeadlineExceeded.String()
		}
		return out
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		j.drop(c)
	} else {
		j.pool <- c // never blocks: at most cap(slots) connections exist
	}
	if resp.StatusCode == http.StatusOK {
		out.Code = "ok"
		return out
	}
	var e struct{ Code string }
	_ = json.Unmarshal(b, &e)
	var code connect.Code
	if err := code.UnmarshalText([]byte(e.Code)); err != nil {
		code = connect.CodeUnknown
	}
	out.Code, out.Recorded = code.String(), resp.Header.Get(SaleRecorded)
	out.Err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	return out
}

// grpcStatus turns a gRPC status and message into a Reply's code and
// error.
func grpcStatus(status, message string) (string, error) {
	if status == "0" {
		return "ok", nil
	}
	n, err := strconv.Atoi(status)
	if err != nil || n < 1 || n > 16 {
		return connect.CodeUnknown.String(), fmt.Errorf("grpc-status %q", status)
	}
	return connect.Code(n).String(), errors.New(connect.Code(n).String() + ": " + message)
}
