package e2e

// Hostile input against the real api binary and a real broker,
// configured as in production: bearer tokens from a file, a CORS allowlist,
// a short header timeout. The in-process tests of services/api cover every
// case over every protocol; this one shows the built binary behaves the
// same, and reads the real topic to prove that nothing but the legitimate
// sales was written.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// hostileToken is the bearer token the hostile stack accepts.
const hostileToken = "e2e-hostile-token-0123456789abcdef"

// hostileOrigin is the one browser origin the hostile stack allows.
const hostileOrigin = "https://api.blackfriday.example.com"

// bearer adds an Authorization header to every request.
type bearer struct {
	rt    http.RoundTripper
	token string
}

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(req)
}

// hostilePost sends raw bytes and returns the HTTP status, the gRPC status
// (headers or trailers) when there is one, and the body.
func hostilePost(t *testing.T, c *http.Client, url, contentType string, body []byte, headers map[string]string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	status := resp.Header.Get("Grpc-Status") + resp.Trailer.Get("Grpc-Status")
	msg := resp.Header.Get("Grpc-Message") + resp.Trailer.Get("Grpc-Message")
	return resp.StatusCode, status, string(b) + msg
}

func hostileFrame(flags byte, msg []byte) []byte {
	out := []byte{flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

func hostileGzip(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestHostileInputRealBinary(t *testing.T) {
	s := newStack(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("# mounted from a Secret in production\n"+hostileToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.startAPI("WRITE_TOKENS_FILE="+tokens, "CORS_ALLOWED_ORIGINS="+hostileOrigin,
		"READ_HEADER_TIMEOUT=1s", "MAX_REQUEST_BYTES=64KiB", "LOG_LEVEL=info")
	h1 := &http.Client{Transport: bearer{&http.Transport{Protocols: protocols(true, false)}, hostileToken}}
	h2 := &http.Client{Transport: bearer{&http.Transport{Protocols: protocols(false, true)}, hostileToken}}
	record := s.url() + salesv1connect.SalesServiceRecordSaleProcedure
	sale := func() *salesv1.Sale {
		return &salesv1.Sale{Category: salesv1.Category_CATEGORY_HOME, ProductId: "H1", PriceCents: 2500, Quantity: 1}
	}
	saleBytes := func(extra []byte) []byte {
		b, _ := proto.Marshal(sale())
		b = append(b, extra...)
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), b)
	}
	ctx := context.Background()

	// The legitimate calls: with the token, through three protocols.
	legit := 0
	for _, c := range []salesv1connect.SalesServiceClient{
		salesv1connect.NewSalesServiceClient(h2, s.url(), connect.WithGRPC()),
		salesv1connect.NewSalesServiceClient(h1, s.url(), connect.WithProtoJSON()),
		salesv1connect.NewSalesServiceClient(h1, s.url(), connect.WithGRPCWeb()),
	} {
		if _, err := c.RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: sale()}); err != nil {
			t.Fatalf("RecordSale() with the token = %v, want OK", err)
		}
		legit++
	}
	status, _, body := hostilePost(t, h1, s.url()+"/venta", "application/json",
		[]byte(`{"categoria":"Hogar","producto_id":"H1","precio":25,"cantidad_vendida":1,"tienda":"centro"}`), nil)
	if status != http.StatusOK {
		t.Fatalf("POST /venta with the token = %d %s, want 200", status, body)
	}
	legit++

	noToken := &http.Client{Transport: &http.Transport{Protocols: protocols(false, true)}}
	bomb := hostileGzip(t, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), make([]byte, 16<<20)))
	tests := []struct {
		name       string
		send       func() (int, string, string)
		wantStatus int    // HTTP status, for Connect and REST
		wantGRPC   string // grpc-status, for gRPC
		wantMsg    string
	}{
		{"gRPC without a token", func() (int, string, string) {
			return hostilePost(t, noToken, record, "application/grpc", hostileFrame(0, saleBytes(nil)), nil)
		}, 200, "16", "bearer token"},
		{"REST without a token", func() (int, string, string) {
			return hostilePost(t, &http.Client{}, s.url()+"/venta", "application/json", []byte(`{"categoria":1,"producto_id":"H1","precio":1,"cantidad_vendida":1}`), nil)
		}, 401, "", "bearer token"},
		{"Connect JSON too large", func() (int, string, string) {
			return hostilePost(t, h1, record, "application/json", []byte(`{"sale":{"productId":"`+strings.Repeat("x", 70<<10)+`"}}`), nil)
		}, 429, "", "resource_exhausted"},
		{"gRPC gzip bomb", func() (int, string, string) {
			return hostilePost(t, h2, record, "application/grpc", hostileFrame(1, bomb), map[string]string{"Grpc-Encoding": "gzip"})
		}, 200, "8", "larger than"},
		{"gRPC length prefix beyond the body", func() (int, string, string) {
			return hostilePost(t, h2, record, "application/grpc", append([]byte{0, 0, 0, 0x10, 0}, saleBytes(nil)...), nil)
		}, 200, "13", "unexpected EOF"}, // grpc-go's words (connect-go's: "promised 4096 bytes")
		{"Connect JSON unknown field", func() (int, string, string) {
			return hostilePost(t, h1, record, "application/json", []byte(`{"sale":{"category":"CATEGORY_HOME","productId":"H1","priceCents":1,"quantity":1,"saleid":"x"}}`), nil)
		}, 400, "", `unknown field \"saleid\"`},
		{"Connect JSON NaN price", func() (int, string, string) {
			return hostilePost(t, h1, record, "application/json", []byte(`{"sale":{"category":"CATEGORY_HOME","productId":"H1","priceCents":"NaN","quantity":1}}`), nil)
		}, 400, "", "priceCents"},
		{"REST precio 1e308", func() (int, string, string) {
			return hostilePost(t, h1, s.url()+"/venta", "application/json", []byte(`{"categoria":1,"producto_id":"H1","precio":1e308,"cantidad_vendida":1}`), nil)
		}, 400, "", "out of range"},
		{"gRPC quantity 2^32+5", func() (int, string, string) {
			q := protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.VarintType), 1<<32+5)
			return hostilePost(t, h2, record, "application/grpc", hostileFrame(0, saleBytes(q)), nil)
		}, 200, "3", "does not fit in 32 bits"},
		{"gRPC product id with a control character", func() (int, string, string) {
			id := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte("H1\x1b[2J"))
			return hostilePost(t, h2, record, "application/grpc", hostileFrame(0, saleBytes(id)), nil)
		}, 200, "3", "product_id"},
		{"gRPC invalid UTF-8", func() (int, string, string) {
			id := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte("H\xff1"))
			return hostilePost(t, h2, record, "application/grpc", hostileFrame(0, saleBytes(id)), nil)
		}, 200, "3", "UTF-8"},
	}
	for _, tt := range tests {
		status, grpcStatus, body := tt.send()
		if status != tt.wantStatus || grpcStatus != tt.wantGRPC || !strings.Contains(body, tt.wantMsg) {
			t.Errorf("%s = HTTP %d, grpc-status %q, %q; want HTTP %d, grpc-status %q, naming %q",
				tt.name, status, grpcStatus, body, tt.wantStatus, tt.wantGRPC, tt.wantMsg)
		}
	}

	t.Run("CORS allowlist", func(t *testing.T) {
		for origin, want := range map[string]string{hostileOrigin: hostileOrigin, "https://evil.example": ""} {
			req, _ := http.NewRequest(http.MethodOptions, record, nil)
			req.Header.Set("Origin", origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-grpc-web,x-user-agent")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
				t.Errorf("preflight from %s: Access-Control-Allow-Origin = %q, want %q", origin, got, want)
			}
		}
	})

	t.Run("slow headers", func(t *testing.T) {
		addr := "127.0.0.1:" + strconv.Itoa(s.apiPort)
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				defer conn.Close()
				start := time.Now()
				fmt.Fprintf(conn, "POST /venta HTTP/1.1\r\nHost: x\r\n")
				closed := make(chan struct{})
				go func() { _, _ = io.Copy(io.Discard, bufio.NewReader(conn)); close(closed) }()
				for n := 0; ; n++ {
					select {
					case <-closed:
						return
					case <-time.After(200 * time.Millisecond):
						fmt.Fprintf(conn, "X-Slow-%d: y\r\n", n)
						// Cut at READ_HEADER_TIMEOUT (1s); a stalled
						// machine may be late, a server that lets the
						// client dribble on is never done.
						if time.Since(start) > 10*time.Second {
							t.Errorf("slow client %d still connected after 10s, want it cut at READ_HEADER_TIMEOUT (1s)", i)
							return
						}
					}
				}
			})
		}
		wg.Wait()
	})

	// Nothing but the legitimate sales reached the topic, and the api
	// still serves.
	if n := len(readTopic(ctx, t, s.kafka, s.topic)); n != legit {
		t.Errorf("topic %s holds %d records, want the %d legitimate sales", s.topic, n, legit)
	}
	if resp, err := http.Get(s.url() + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz after hostile input = %v, %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	metrics := scrape(t, "http://127.0.0.1:"+strconv.Itoa(s.metricsPort)+"/metrics")
	if !strings.Contains(metrics, `code="unauthenticated"`) {
		t.Errorf("the api's metrics count no unauthenticated call")
	}
}
