package protocol

// A lean gRPC client over raw HTTP/2 frames: many streams on a few
// connections, one frame reader per connection, no goroutine per call. It
// speaks exactly what RecordSale needs: unary calls, the gRPC status in
// trailers (or a trailers-only answer), flow control, SETTINGS, PING and
// GOAWAY (RFC 9113); only HPACK comes from golang.org/x/net.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// saleRecordedField is SaleRecorded as HTTP/2 sends it, in lower case.
var saleRecordedField = strings.ToLower(SaleRecorded)

// h2StreamsPerConn stays below the server's SETTINGS_MAX_CONCURRENT_STREAMS
// (Go's default is 250).
const h2StreamsPerConn = 200

// HTTP/2 frame types and flags (RFC 9113, section 6).
const (
	h2Data         = 0x0
	h2Headers      = 0x1
	h2RSTStream    = 0x3
	h2Settings     = 0x4
	h2Ping         = 0x6
	h2GoAway       = 0x7
	h2WindowUpdate = 0x8
	h2Continuation = 0x9

	h2FlagEndStream  = 0x1
	h2FlagAck        = 0x1
	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
	h2FlagPriority   = 0x20

	h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

// leanGRPC sends RecordSale over a fixed number of HTTP/2 connections,
// each dialed on first use and again once it has failed.
type leanGRPC struct {
	addr, auth string
	dial       dialFunc
	next       atomic.Uint64

	mu    sync.Mutex
	conns []*h2Conn
}

func (g *leanGRPC) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, c := range g.conns {
		if c != nil {
			c.fail(errors.New("client closed"))
			g.conns[i] = nil
		}
	}
}

// conn returns the next connection in turn, dialing it if it is new, has
// failed, or is going away (its own calls then finish on it).
func (g *leanGRPC) conn(ctx context.Context) (*h2Conn, error) {
	i := g.next.Add(1) % uint64(len(g.conns))
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.conns[i]; c != nil && c.usable() {
		return c, nil
	}
	c, err := dialH2(ctx, g.dial, g.addr)
	if err != nil {
		return nil, err
	}
	g.conns[i] = c
	return c, nil
}

// errRefused marks a call the server certainly never saw: it was not
// written before its connection failed, or the server refused its stream
// or said in a GOAWAY that it was not processed (RFC 9113, sections 6.8
// and 8.7). Such a call is sent again, on another connection.
var errRefused = errors.New("not processed by the server")

// maxAttempts bounds the times a call is sent while the server refuses it.
const maxAttempts = 5

func (g *leanGRPC) send(ctx context.Context, sales []*salesv1.Sale) Reply {
	msg, err := proto.Marshal(&salesv1.RecordSaleRequest{Sale: sales[0]})
	if err != nil {
		return Reply{Code: connect.CodeInternal.String(), Err: err}
	}
	var r Reply
	for range maxAttempts {
		c, err := g.conn(ctx)
		if err != nil {
			return Reply{Code: connect.CodeUnavailable.String(), Err: err}
		}
		if r = c.call(ctx, msg, g.auth); !errors.Is(r.Err, errRefused) || ctx.Err() != nil {
			return r
		}
	}
	return r
}

// h2Conn is one HTTP/2 connection and its streams. Its frame reader, the
// one goroutine it runs, ends when the connection fails or closes.
type h2Conn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer

	// wmu serializes writes and guards the send window, stream ids and
	// the header encoder.
	wmu       sync.Mutex
	window    int64
	windowC   *sync.Cond
	nextID    uint32
	henc      *hpack.Encoder
	hbuf      bytes.Buffer
	slots     chan struct{}
	authority string
	hdec      *hpack.Decoder

	mu      sync.Mutex
	streams map[uint32]*h2Stream
	dead    error
	// goingAway is set by the server's GOAWAY: the connection takes no
	// new calls, and closes once its last one is answered.
	goingAway bool
	// unacked counts received DATA bytes not yet given back with a
	// WINDOW_UPDATE.
	unacked int
}

type h2Stream struct {
	done     chan struct{}
	answered time.Time
	status   string
	message  string
	recorded string
	err      error
}

func dialH2(ctx context.Context, dial dialFunc, addr string) (*h2Conn, error) {
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &h2Conn{
		c: nc, br: bufio.NewReaderSize(nc, 64<<10), bw: bufio.NewWriterSize(nc, 64<<10),
		window: 65535, nextID: 1, slots: make(chan struct{}, h2StreamsPerConn),
		authority: addr, streams: map[uint32]*h2Stream{}, hdec: hpack.NewDecoder(4096, nil),
	}
	c.windowC = sync.NewCond(&c.wmu)
	c.henc = hpack.NewEncoder(&c.hbuf)
	// Large receive windows: the answers flow without waiting for us.
	settings := []byte{0, 4, 0, 0x10, 0, 0} // SETTINGS_INITIAL_WINDOW_SIZE = 1 MiB
	_, _ = io.WriteString(c.bw, h2Preface)
	c.writeFrame(h2Settings, 0, 0, settings)
	c.writeFrame(h2WindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, 1<<24))
	if err := c.bw.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	go c.readLoop()
	return c, nil
}

// writeFrame buffers one frame; the caller holds wmu (or owns the
// connection) and flushes.
func (c *h2Conn) writeFrame(typ, flags byte, stream uint32, payload []byte) {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	h[3], h[4] = typ, flags
	binary.BigEndian.PutUint32(h[5:], stream&0x7fffffff)
	_, _ = c.bw.Write(h[:])
	_, _ = c.bw.Write(payload)
}

// call sends one unary call and waits for its status.
func (c *h2Conn) call(ctx context.Context, msg []byte, auth string) Reply {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return Reply{Code: connect.CodeDeadlineExceeded.String(), Err: ctx.Err()}
	}
	defer func() { <-c.slots }()
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	copy(body[5:], msg)
	s := &h2Stream{done: make(chan struct{})}

	c.wmu.Lock()
	for c.window < int64(len(body)) && c.deadErr() == nil {
		c.windowC.Wait()
	}
	id := c.nextID
	c.mu.Lock()
	if c.dead != nil || c.goingAway {
		err := c.dead
		if err == nil {
			err = errors.New("connection going away")
		}
		c.mu.Unlock()
		c.wmu.Unlock()
		return Reply{Code: connect.CodeUnavailable.String(), Err: fmt.Errorf("%w: %w", errRefused, err)}
	}
	c.streams[id] = s
	c.mu.Unlock()
	c.nextID += 2
	c.hbuf.Reset()
	// Header names as net/http spells them, lowered as HTTP/2 sends them
	// (RFC 9113, section 8.2.1); the pseudo-headers come first.
	fields := [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":authority", c.authority},
		{":path", salesv1connect.SalesServiceRecordSaleProcedure},
		{"Content-Type", "application/grpc"}, {"Te", "trailers"},
	}
	if auth != "" {
		fields = append(fields, [2]string{"Authorization", auth})
	}
	for _, f := range fields {
		_ = c.henc.WriteField(hpack.HeaderField{Name: strings.ToLower(f[0]), Value: f[1]})
	}
	c.writeFrame(h2Headers, h2FlagEndHeaders, id, c.hbuf.Bytes())
	c.writeFrame(h2Data, h2FlagEndStream, id, body)
	err := c.bw.Flush()
	c.window -= int64(len(body))
	c.wmu.Unlock()
	wrote := time.Now()
	if err != nil {
		c.fail(err)
		return Reply{Code: connect.CodeUnavailable.String(), Err: err, Wrote: wrote}
	}

	select {
	case <-s.done:
	case <-ctx.Done():
		c.write(h2RSTStream, 0, id, []byte{0, 0, 0, 0x8}) // CANCEL
		c.finish(id, func(*h2Stream) {})
		return Reply{Code: connect.CodeDeadlineExceeded.String(), Err: ctx.Err(), Wrote: wrote}
	}
	out := Reply{Wrote: wrote, Answered: s.answered, Recorded: s.recorded}
	if s.err != nil {
		out.Code, out.Err = connect.CodeUnavailable.String(), s.err
		return out
	}
	out.Code, out.Err = grpcStatus(s.status, s.message)
	return out
}

func (c *h2Conn) deadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// usable reports whether the connection takes new calls.
func (c *h2Conn) usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead == nil && !c.goingAway
}

// goAway takes the server's GOAWAY: the calls above its last stream id
// were never processed, and are refused (to be sent again elsewhere); the
// others are answered on this connection, which then closes.
func (c *h2Conn) goAway(p []byte) {
	if len(p) < 8 {
		c.fail(errors.New("malformed goaway"))
		return
	}
	last := binary.BigEndian.Uint32(p) & 0x7fffffff
	c.mu.Lock()
	c.goingAway = true
	var refused []*h2Stream
	for id, s := range c.streams {
		if id > last {
			refused = append(refused, s)
			delete(c.streams, id)
		}
	}
	drained := len(c.streams) == 0
	c.mu.Unlock()
	for _, s := range refused {
		s.err = fmt.Errorf("%w: goaway (last stream %d, code %#x)", errRefused, last, binary.BigEndian.Uint32(p[4:]))
		close(s.done)
	}
	if drained {
		_ = c.c.Close()
	}
}

// fail ends the connection and every stream on it.
func (c *h2Conn) fail(err error) {
	c.mu.Lock()
	if c.dead == nil {
		c.dead = err
	}
	streams := c.streams
	c.streams = map[uint32]*h2Stream{}
	c.mu.Unlock()
	for _, s := range streams {
		s.err = err
		close(s.done)
	}
	c.c.Close()
	c.wmu.Lock()
	c.windowC.Broadcast()
	c.wmu.Unlock()
}

// finish completes a stream; the last one of a connection going away
// closes it.
func (c *h2Conn) finish(id uint32, apply func(*h2Stream)) {
	c.mu.Lock()
	s := c.streams[id]
	delete(c.streams, id)
	drained := c.goingAway && len(c.streams) == 0
	c.mu.Unlock()
	if s != nil {
		s.answered = time.Now()
		apply(s)
		close(s.done)
	}
	if drained {
		_ = c.c.Close()
	}
}

// write writes and flushes one frame under the write lock.
func (c *h2Conn) write(typ, flags byte, stream uint32, payload []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.writeFrame(typ, flags, stream, payload)
	_ = c.bw.Flush()
}

// readFrame reads one frame.
func (c *h2Conn) readFrame() (typ, flags byte, stream uint32, payload []byte, err error) {
	var h [9]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return 0, 0, 0, nil, err
	}
	n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	if n > 1<<20 {
		return 0, 0, 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(c.br, payload); err != nil {
		return 0, 0, 0, nil, err
	}
	return h[3], h[4], binary.BigEndian.Uint32(h[5:]) & 0x7fffffff, payload, nil
}

// unpad strips a frame's padding (and a HEADERS frame's priority).
func unpad(typ, flags byte, p []byte) ([]byte, error) {
	if flags&h2FlagPadded != 0 {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return nil, errors.New("bad padding")
		}
		p = p[1 : len(p)-int(p[0])]
	}
	if typ == h2Headers && flags&h2FlagPriority != 0 {
		if len(p) < 5 {
			return nil, errors.New("bad priority")
		}
		p = p[5:]
	}
	return p, nil
}

// readLoop reads frames until the connection fails or closes.
func (c *h2Conn) readLoop() {
	var block []byte // a header block being assembled
	var blockStream uint32
	var blockEnds bool
	for {
		typ, flags, stream, p, err := c.readFrame()
		if err != nil {
			c.fail(err)
			return
		}
		switch typ {
		case h2Settings:
			if flags&h2FlagAck == 0 {
				c.write(h2Settings, h2FlagAck, 0, nil)
			}
		case h2Ping:
			if flags&h2FlagAck == 0 {
				c.write(h2Ping, h2FlagAck, 0, p)
			}
		case h2WindowUpdate:
			if stream == 0 && len(p) == 4 {
				c.wmu.Lock()
				c.window += int64(binary.BigEndian.Uint32(p) & 0x7fffffff)
				c.windowC.Broadcast()
				c.wmu.Unlock()
			}
		case h2Headers, h2Continuation:
			if typ == h2Headers {
				if p, err = unpad(typ, flags, p); err != nil {
					c.fail(err)
					return
				}
				block, blockStream, blockEnds = append(block[:0], p...), stream, flags&h2FlagEndStream != 0
			} else {
				block = append(block, p...)
			}
			if flags&h2FlagEndHeaders == 0 {
				continue
			}
			fields, err := c.hdec.DecodeFull(block)
			if err != nil {
				c.fail(err)
				return
			}
			c.headers(blockStream, fields, blockEnds)
		case h2Data:
			// Give the connection's receive window back in batches.
			c.mu.Lock()
			c.unacked += len(p)
			give := 0
			if c.unacked >= 1<<20 {
				give, c.unacked = c.unacked, 0
			}
			c.mu.Unlock()
			if give > 0 {
				c.write(h2WindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(give)))
			}
			if flags&h2FlagEndStream != 0 {
				c.finish(stream, func(s *h2Stream) { s.err = errors.New("stream ended without trailers") })
			}
		case h2RSTStream:
			c.finish(stream, func(s *h2Stream) {
				s.err = fmt.Errorf("stream reset (code %x)", p)
				if bytes.Equal(p, []byte{0, 0, 0, 0x7}) { // REFUSED_STREAM: never processed
					s.err = fmt.Errorf("%w: %w", errRefused, s.err)
				}
			})
		case h2GoAway:
			c.goAway(p)
		}
	}
}

// headers takes a stream's headers or trailers: the gRPC status ends it.
func (c *h2Conn) headers(stream uint32, fields []hpack.HeaderField, ends bool) {
	status, message, recorded := "", "", ""
	for _, h := range fields {
		switch h.Name {
		case "grpc-status":
			status = h.Value
		case "grpc-message":
			message = h.Value
		case saleRecordedField:
			recorded = h.Value
		}
	}
	c.mu.Lock()
	if s := c.streams[stream]; s != nil && recorded != "" {
		s.recorded = recorded
	}
	c.mu.Unlock()
	if !ends {
		return
	}
	c.finish(stream, func(s *h2Stream) {
		s.status, s.message = status, message
		if status == "" {
			s.err = errors.New("stream ended without grpc-status")
		}
	})
}
