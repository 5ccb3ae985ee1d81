package server

// Hostile input: each case gets a clear error, never crashes the
// server, and writes nothing to Kafka, checked by the topic's end offsets
// once every case has run. docs/security.md describes the policies.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	legacypb "blackfriday.local/gen/blackfriday"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

// hostileMaxBytes is the request cap of the hostile harness: small, so that
// oversized and decompressed bodies are cheap to make.
const hostileMaxBytes = 64 << 10

// answer is what the server said to a raw request: a Connect code ("" for
// success), and the message.
type answer struct {
	code    string
	message string
	status  int
}

func (a answer) String() string { return fmt.Sprintf("%d %s: %s", a.status, a.code, a.message) }

// postConnect sends a raw Connect unary request.
func postConnect(t *testing.T, c *http.Client, url, contentType string, body []byte, headers map[string]string) answer {
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
	if resp.StatusCode == http.StatusOK {
		return answer{status: resp.StatusCode}
	}
	var e struct{ Code, Message, Error string }
	_ = json.Unmarshal(b, &e)
	if e.Code == "" { // the course's REST shape
		e.Code = e.Error
	}
	if e.Code == "" {
		e.Code, e.Message = "unparsed", string(b)
	}
	return answer{code: e.Code, message: e.Message, status: resp.StatusCode}
}

// postGRPC sends raw gRPC (h2c) or gRPC-Web (HTTP/1.1) bytes and reads the
// status from the headers or trailers.
func postGRPC(t *testing.T, h *harness, web bool, path string, body []byte, headers map[string]string) answer {
	t.Helper()
	c, ct := httpClient(t, false, true), "application/grpc+proto"
	if web {
		c, ct = httpClient(t, true, false), "application/grpc-web+proto"
	}
	req, err := http.NewRequest(http.MethodPost, h.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Te", "trailers")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	status, msg := resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	if status == "" {
		status, msg = resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	}
	if status == "" && web {
		// gRPC-Web trailers travel in a last frame of the body.
		status, msg = webTrailer(b)
	}
	var code connect.Code
	if status == "" {
		return answer{code: "no grpc-status", status: resp.StatusCode}
	}
	if status == "0" {
		return answer{status: resp.StatusCode}
	}
	_ = code.UnmarshalText([]byte(codeName(status)))
	return answer{code: code.String(), message: msg, status: resp.StatusCode}
}

func codeName(status string) string {
	var n int
	_, _ = fmt.Sscan(status, &n)
	return connect.Code(n).String()
}

// webTrailer finds grpc-status and grpc-message in a gRPC-Web body's
// trailer frame.
func webTrailer(b []byte) (status, msg string) {
	for len(b) >= 5 {
		flags, n := b[0], int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			return "", ""
		}
		if flags&0x80 != 0 {
			for _, line := range strings.Split(string(b[5:5+n]), "\r\n") {
				k, v, _ := strings.Cut(line, ":")
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "grpc-status":
					status = strings.TrimSpace(v)
				case "grpc-message":
					msg = strings.TrimSpace(v)
				}
			}
		}
		b = b[5+n:]
	}
	return status, msg
}

// frame wraps a message in a gRPC envelope.
func frame(flags byte, msg []byte) []byte {
	out := []byte{flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// saleBytes encodes a RecordSaleRequest whose sale is the valid sale plus
// the raw fields given (appended: on the wire, the last value of a field
// wins).
func saleBytes(t *testing.T, extra []byte) []byte {
	t.Helper()
	sale := append(marshal(t, validSale()), extra...)
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), sale)
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func bytesField(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

// legacyBytes encodes a ProductSaleRequest with raw fields appended.
func legacyBytes(t *testing.T, extra []byte) []byte {
	t.Helper()
	return append(marshal(t, &legacypb.ProductSaleRequest{
		Categoria: legacypb.CategoriaProducto_HOGAR, ProductoId: "P7", Precio: 19.99, CantidadVendida: 1,
	}), extra...)
}

// jsonSale is a Connect JSON RecordSale body with one sale field's raw JSON
// replaced (or added).
func jsonSale(field, raw string) []byte {
	fields := map[string]string{
		"category": `"CATEGORY_HOME"`, "productId": `"P1"`, "priceCents": `"1999"`, "quantity": `2`,
	}
	fields[field] = raw
	var parts []string
	for _, k := range []string{"category", "productId", "priceCents", "quantity"} {
		parts = append(parts, fmt.Sprintf("%q:%s", k, fields[k]))
		delete(fields, k)
	}
	for k, v := range fields {
		parts = append(parts, fmt.Sprintf("%q:%s", k, v))
	}
	return []byte(`{"sale":{` + strings.Join(parts, ",") + `}}`)
}

// venta is a course REST body with one field's raw JSON replaced.
func venta(field, raw string) []byte {
	fields := map[string]string{"categoria": `"Hogar"`, "producto_id": `"P7"`, "precio": `19.99`, "cantidad_vendida": `1`}
	fields[field] = raw
	var parts []string
	for _, k := range []string{"categoria", "producto_id", "precio", "cantidad_vendida"} {
		parts = append(parts, fmt.Sprintf("%q:%s", k, fields[k]))
	}
	return []byte("{" + strings.Join(parts, ",") + "}")
}

// TestHostileInput sends every hostile case of the issue through the
// protocols it applies to. Each must answer its code with a message naming
// what is wrong, and the topic must stay empty.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{maxRequestBytes: hostileMaxBytes})
	http1, h2c := httpClient(t, true, false), httpClient(t, false, true)
	record := h.url + salesv1connect.SalesServiceRecordSaleProcedure
	recordSales := h.url + salesv1connect.SalesServiceRecordSalesProcedure
	procesar := blackfridayconnect.ProductSaleServiceProcesarVentaProcedure
	big := bytes.Repeat([]byte("x"), hostileMaxBytes+1)
	bomb := bytes.Repeat([]byte(" "), 16<<20) // 16 MiB of JSON whitespace: ~16 KiB gzipped
	bombJSON := append(append([]byte(`{"sale":`), bomb...), `{}}`...)
	bombProto := bytesField(1, bytes.Repeat([]byte{0}, 16<<20))
	const (
		invalid   = "invalid_argument"
		exhausted = "resource_exhausted"
		internal  = "internal"
	)

	type tc struct {
		name     string
		send     func(t *testing.T) answer
		wantCode string
		wantMsg  string // a part of the message
	}
	connectJSON := func(body []byte, headers map[string]string) func(t *testing.T) answer {
		return func(t *testing.T) answer { return postConnect(t, http1, record, "application/json", body, headers) }
	}
	connectProto := func(body []byte, headers map[string]string) func(t *testing.T) answer {
		return func(t *testing.T) answer { return postConnect(t, h2c, record, "application/proto", body, headers) }
	}
	grpc := func(path string, body []byte, headers map[string]string) func(t *testing.T) answer {
		return func(t *testing.T) answer { return postGRPC(t, h, false, path, body, headers) }
	}
	grpcWeb := func(path string, body []byte, headers map[string]string) func(t *testing.T) answer {
		return func(t *testing.T) answer { return postGRPC(t, h, true, path, body, headers) }
	}
	rest := func(body []byte, headers map[string]string) func(t *testing.T) answer {
		return func(t *testing.T) answer {
			return postConnect(t, http1, h.url+"/venta", "application/json", body, headers)
		}
	}
	recordPath := salesv1connect.SalesServiceRecordSaleProcedure
	gz := map[string]string{"Content-Encoding": "gzip"}
	grpcGz := map[string]string{"Grpc-Encoding": "gzip"}
	sale := saleBytes(t, nil)
	tooBig := uint64(math.MaxUint32) + 6 // 2^32+5: truncated to 32 bits, it would read 5

	tests := []tc{
		// Oversized bodies: over the cap on the wire, or once decompressed.
		{"oversized/Connect JSON", connectJSON(jsonSale("productId", `"`+string(big)+`"`), nil), exhausted, "exceeded 65536 byte"},
		{"oversized/Connect proto", connectProto(saleBytes(t, bytesField(2, big)), nil), exhausted, "exceeded 65536 byte"},
		{"oversized/gRPC", grpc(recordPath, frame(0, saleBytes(t, bytesField(2, big))), nil), exhausted, "larger than"},
		{"oversized/gRPC-Web", grpcWeb(recordPath, frame(0, saleBytes(t, bytesField(2, big))), nil), exhausted, "larger than"},
		{"oversized/gRPC length prefix only", grpc(recordPath, []byte{0, 0xff, 0xff, 0xff, 0xff}, nil), exhausted, "larger than configured max"},
		{"oversized/REST", rest(venta("producto_id", `"`+string(big)+`"`), nil), exhausted, "larger than"},
		{"gzip bomb/Connect JSON", connectJSON(gzipped(t, bombJSON), gz), exhausted, "larger than configured max"},
		{"gzip bomb/Connect proto", connectProto(gzipped(t, bombProto), gz), exhausted, "larger than configured max"},
		{"gzip bomb/gRPC", grpc(recordPath, frame(1, gzipped(t, bombProto)), grpcGz), exhausted, "larger than configured max"},
		{"gzip bomb/gRPC-Web", grpcWeb(recordPath, frame(1, gzipped(t, bombProto)), grpcGz), exhausted, "larger than configured max"},
		{"gzip/REST", rest(gzipped(t, venta("precio", "1")), gz), invalid, "Content-Encoding"},
		{"not gzip/Connect JSON", connectJSON([]byte(`{"sale":{}}`), gz), invalid, "decompress"},

		// Malformed gRPC frames.
		{"frame/length beyond the body", grpc(recordPath, append([]byte{0, 0, 0, 0x10, 0}, sale...), nil), internal, "promised 4096 bytes"},
		{"frame/truncated prefix", grpc(recordPath, []byte{0, 0, 0}, nil), internal, "incomplete envelope"},
		{"frame/compressed without encoding", grpc(recordPath, frame(1, sale), nil), internal, "compressed message without compression"},
		{"frame/compressed flag, not gzip", grpc(recordPath, frame(1, sale), grpcGz), invalid, "decompress"},
		{"frame/unknown encoding", grpc(recordPath, frame(1, sale), map[string]string{"Grpc-Encoding": "zstd-bomb"}), "unimplemented", "unknown compression"},
		{"frame/two messages", grpc(recordPath, append(frame(0, sale), frame(0, sale)...), nil), "unimplemented", "multiple messages"},
		{"frame/trailer flag from the client", grpc(recordPath, frame(0x80, sale), nil), internal, ""},
		{"frame/garbage message", grpc(recordPath, frame(0, []byte{0xff, 0xff, 0xff}), nil), invalid, "invalid protobuf"},
		{"frame/gRPC-Web length beyond the body", grpcWeb(recordPath, append([]byte{0, 0, 0, 0x10, 0}, sale...), nil), internal, "promised 4096 bytes"},
		{"frame/legacy gRPC truncated prefix", grpc(procesar, []byte{0, 0}, nil), internal, "incomplete envelope"},

		// Unknown fields: refused by SalesService, in JSON and binary.
		{"unknown field/Connect JSON", connectJSON(jsonSale("saleid", `"abc"`), nil), invalid, `unknown field "saleid"`},
		{"unknown field/Connect JSON top level", connectJSON([]byte(`{"sale":{"category":"CATEGORY_HOME","productId":"P1","priceCents":1,"quantity":1},"dryRun":true}`), nil), invalid, `unknown field "dryRun"`},
		{"unknown field/Connect JSON batch", func(t *testing.T) answer {
			return postConnect(t, http1, recordSales, "application/json", []byte(`{"sales":[{"category":"CATEGORY_HOME","productId":"P1","priceCents":1,"quantity":1},{"category":"CATEGORY_HOME","productId":"P1","priceCents":1,"quantity":1,"currency":"EUR"}]}`), nil)
		}, invalid, `unknown field "currency"`},
		{"unknown field/Connect proto", connectProto(saleBytes(t, bytesField(99, []byte("EUR"))), nil), invalid, "unknown field 99 in sale"},
		{"unknown field/gRPC", grpc(recordPath, frame(0, saleBytes(t, varintField(42, 1))), nil), invalid, "unknown field 42 in sale"},
		{"unknown field/gRPC in sold_at", grpc(recordPath, frame(0, saleBytes(t, bytesField(6, varintField(9, 1)))), nil), invalid, "unknown field 9 in sale.sold_at"},
		{"unknown field/gRPC-Web request", grpcWeb(recordPath, frame(0, append(sale, varintField(2, 1)...)), nil), invalid, "unknown field 2 in RecordSaleRequest"},

		// Strings that are not UTF-8.
		{"non-UTF-8/Connect JSON raw byte", connectJSON(jsonSale("productId", "\"P\xff1\""), nil), invalid, "invalid UTF-8"},
		{"non-UTF-8/Connect JSON lone surrogate", connectJSON(jsonSale("productId", `"P\udc001"`), nil), invalid, "invalid escape code"},
		{"non-UTF-8/Connect proto", connectProto(saleBytes(t, bytesField(2, []byte("P\xff1"))), nil), invalid, "invalid UTF-8"},
		{"non-UTF-8/gRPC sale id", grpc(recordPath, frame(0, saleBytes(t, bytesField(5, []byte("\xc3\x28")))), nil), invalid, "invalid UTF-8"},
		{"non-UTF-8/legacy gRPC", grpc(procesar, frame(0, legacyBytes(t, bytesField(2, []byte("P\xff7")))), nil), invalid, "invalid UTF-8"},
		{"non-UTF-8/REST", rest(venta("producto_id", "\"P\xff7\""), nil), invalid, "does not match regex"},

		// Prices: NaN, infinities, negative, beyond int64.
		{"price/NaN string", connectJSON(jsonSale("priceCents", `"NaN"`), nil), invalid, "priceCents"},
		{"price/Infinity string", connectJSON(jsonSale("priceCents", `"Infinity"`), nil), invalid, "priceCents"},
		{"price/NaN token", connectJSON(jsonSale("priceCents", `NaN`), nil), invalid, "invalid JSON"},
		{"price/negative", connectJSON(jsonSale("priceCents", `-1`), nil), invalid, "sale.price_cents: must be greater than 0"},
		{"price/fraction", connectJSON(jsonSale("priceCents", `19.99`), nil), invalid, "priceCents"},
		{"price/beyond int64", connectJSON(jsonSale("priceCents", `9223372036854775808`), nil), invalid, "priceCents"},
		{"price/beyond int64 as text", connectJSON(jsonSale("priceCents", `"99999999999999999999999"`), nil), invalid, "priceCents"},
		{"price/1e308", connectJSON(jsonSale("priceCents", `1e308`), nil), invalid, "priceCents"},
		{"price/min int64 in binary", connectProto(saleBytes(t, varintField(3, 1<<63)), nil), invalid, "sale.price_cents: must be greater than 0"},
		{"price/above the cap in binary", grpc(recordPath, frame(0, saleBytes(t, varintField(3, 100_000_001))), nil), invalid, "sale.price_cents"},
		{"price/REST 1e308", rest(venta("precio", `1e308`), nil), invalid, "is out of range"},
		{"price/REST NaN string", rest(venta("precio", `"NaN"`), nil), invalid, "must be a number"},
		{"price/REST NaN token", rest(venta("precio", `NaN`), nil), invalid, "not valid JSON"},
		{"price/REST negative", rest(venta("precio", `-0.01`), nil), invalid, "must be greater than 0"},
		{"price/REST beyond int64 cents", rest(venta("precio", `92233720368547758.08`), nil), invalid, "is out of range"},
		{"price/legacy gRPC NaN", grpc(procesar, frame(0, legacyBytes(t, protowire.AppendFixed64(protowire.AppendTag(nil, 3, protowire.Fixed64Type), math.Float64bits(math.NaN())))), nil), invalid, "precio: must be a finite number"},
		{"price/legacy gRPC +Inf", grpc(procesar, frame(0, legacyBytes(t, protowire.AppendFixed64(protowire.AppendTag(nil, 3, protowire.Fixed64Type), math.Float64bits(math.Inf(1))))), nil), invalid, "precio: must be a finite number"},
		{"price/legacy gRPC 1e308", grpc(procesar, frame(0, legacyBytes(t, protowire.AppendFixed64(protowire.AppendTag(nil, 3, protowire.Fixed64Type), math.Float64bits(1e308)))), nil), invalid, "precio: is out of range"},
		{"price/legacy gRPC negative", grpc(procesar, frame(0, legacyBytes(t, protowire.AppendFixed64(protowire.AppendTag(nil, 3, protowire.Fixed64Type), math.Float64bits(-5)))), nil), invalid, "precio: must be greater than 0"},

		// Quantities beyond int32.
		{"quantity/JSON beyond int32", connectJSON(jsonSale("quantity", `2147483648`), nil), invalid, "quantity"},
		{"quantity/JSON 1e10", connectJSON(jsonSale("quantity", `1e10`), nil), invalid, "quantity"},
		{"quantity/JSON negative", connectJSON(jsonSale("quantity", `-1`), nil), invalid, "sale.quantity"},
		{"quantity/proto 2^32+5", connectProto(saleBytes(t, varintField(4, tooBig)), nil), invalid, "sale.quantity: value does not fit in 32 bits"},
		{"quantity/gRPC 2^32+5", grpc(recordPath, frame(0, saleBytes(t, varintField(4, tooBig))), nil), invalid, "sale.quantity: value does not fit in 32 bits"},
		{"quantity/gRPC batch item 2^32+5", grpc(salesv1connect.SalesServiceRecordSalesProcedure,
			frame(0, append(append([]byte(nil), sale...), bytesField(1, append(marshal(t, validSale()), varintField(4, tooBig)...))...)), nil),
			invalid, "sales[1].quantity: value does not fit in 32 bits"},
		{"category/gRPC 2^32+1", grpc(recordPath, frame(0, saleBytes(t, varintField(1, uint64(math.MaxUint32)+2))), nil), invalid, "sale.category: value does not fit in 32 bits"},
		{"quantity/legacy gRPC 2^32+5", grpc(procesar, frame(0, legacyBytes(t, varintField(4, tooBig))), nil), invalid, "cantidad_vendida: value does not fit in 32 bits"},
		{"quantity/REST beyond int32", rest(venta("cantidad_vendida", `4294967301`), nil), invalid, "is out of range"},
		{"quantity/REST above the cap", rest(venta("cantidad_vendida", `10001`), nil), invalid, "less than or equal to 10000"},

		// Product ids with control characters or of extreme length.
		{"product id/newline at the end", connectJSON(jsonSale("productId", `"P1\n"`), nil), invalid, "sale.product_id: does not match regex"},
		{"product id/NUL", connectJSON(jsonSale("productId", `"P\u00001"`), nil), invalid, "sale.product_id: does not match regex"},
		{"product id/tab first", connectJSON(jsonSale("productId", `"\tP1"`), nil), invalid, "sale.product_id: does not match regex"},
		{"product id/right-to-left override", connectJSON(jsonSale("productId", `"P1\u202e"`), nil), invalid, "sale.product_id: does not match regex"},
		{"product id/escape sequence", grpc(recordPath, frame(0, saleBytes(t, bytesField(2, []byte("P1\x1b[2J")))), nil), invalid, "sale.product_id: does not match regex"},
		{"product id/65 characters", connectJSON(jsonSale("productId", `"`+strings.Repeat("p", 65)+`"`), nil), invalid, "sale.product_id: must be at most 64 characters"},
		{"product id/60 KiB", grpc(recordPath, frame(0, saleBytes(t, bytesField(2, bytes.Repeat([]byte("p"), 60<<10)))), nil), invalid, "sale.product_id: must be at most 64 characters"},
		{"product id/REST control character", rest(venta("producto_id", `"P7\r\nX-Injected: 1"`), nil), invalid, "does not match regex"},
		{"product id/REST 60 KiB", rest(venta("producto_id", `"`+strings.Repeat("p", 60<<10)+`"`), nil), invalid, "must be at most 64 characters"},
		{"product id/legacy gRPC NUL", grpc(procesar, frame(0, legacyBytes(t, bytesField(2, []byte("P\x007")))), nil), invalid, "producto_id"},
	}
	// grpc-go reads a gRPC message, envelope and compression before any
	// of our code runs, and words those failures itself; two codes differ
	// from connect-go's (a compressed flag on a body that is not gzip, and
	// a second message to a unary method are internal there).
	grpcGo := map[string][2]string{
		"oversized/gRPC length prefix only":  {exhausted, "larger than max"},
		"gzip bomb/gRPC":                     {exhausted, "larger than max"},
		"frame/length beyond the body":       {internal, "unexpected EOF"},
		"frame/truncated prefix":             {internal, "unexpected EOF"},
		"frame/compressed without encoding":  {internal, "compressed flag set with identity or empty encoding"},
		"frame/compressed flag, not gzip":    {internal, "failed to decompress"},
		"frame/unknown encoding":             {"unimplemented", "Decompressor is not installed"},
		"frame/two messages":                 {internal, "cardinality violation"},
		"frame/legacy gRPC truncated prefix": {internal, "unexpected EOF"},
	}
	for _, tt := range tests {
		if w, ok := grpcGo[tt.name]; ok && testGRPCServer() == GRPCServerGo {
			tt.wantCode, tt.wantMsg = w[0], w[1]
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.send(t)
			t.Logf("%s: %v", tt.name, got)
			if got.code != tt.wantCode || !strings.Contains(got.message, tt.wantMsg) {
				t.Errorf("%s = %v, want %s naming %q", tt.name, got, tt.wantCode, tt.wantMsg)
			}
		})
	}
	t.Cleanup(func() {
		if n := h.written(t); n != 0 {
			t.Errorf("topic holds %d records after hostile input only, want 0", n)
		}
		// The server still serves.
		if status, _ := getJSON(t, h.url+"/healthz"); status != http.StatusOK {
			t.Errorf("GET /healthz after hostile input = %d, want 200", status)
		}
	})
}

// TestUnknownFieldsLegacyUnchanged checks the other side of the policy: the
// course's clients keep working when they send fields we do not know, over
// REST (JSON) and gRPC (binary).
func TestUnknownFieldsLegacyUnchanged(t *testing.T) {
	t.Parallel()
	h := newHarness(t, options{})
	got := postConnect(t, httpClient(t, true, false), h.url+"/venta", "application/json",
		[]byte(`{"categoria":"Hogar","producto_id":"P7","precio":19.99,"cantidad_vendida":1,"tienda":"centro","cliente":{"id":7}}`), nil)
	if got.status != http.StatusOK {
		t.Errorf("POST /venta with unknown fields = %v, want 200", got)
	}
	got = postGRPC(t, h, false, blackfridayconnect.ProductSaleServiceProcesarVentaProcedure,
		frame(0, legacyBytes(t, append(bytesField(15, []byte("centro")), varintField(16, 3)...))), nil)
	if got.code != "" {
		t.Errorf("ProcesarVenta with unknown fields = %v, want OK", got)
	}
	recs := h.consume(t)
	if len(recs) != 2 {
		t.Fatalf("topic holds %d records, want 2", len(recs))
	}
	for _, r := range recs {
		var sale salesv1.Sale
		if err := proto.Unmarshal(r.Value, &sale); err != nil || len(sale.ProtoReflect().GetUnknown()) != 0 {
			t.Errorf("record %x = %v, %v, want a sale without unknown fields", r.Value, &sale, err)
		}
	}
}

// TestSlowHeaders opens many connections that dribble their headers, one
// line every 100ms: each is cut at ReadHeaderTimeout, none holds a
// goroutine afterwards, and meanwhile the server answers a normal sale at
// once. Not parallel: it counts goroutines.
func TestSlowHeaders(t *testing.T) {
	const (
		slowClients = 200
		// Long enough that a normal call held up by the slow clients
		// until they are cut would stand out from a stalled machine.
		timeout = 3 * time.Second
	)
	h := newHarness(t, options{server: Config{ReadHeaderTimeout: timeout}})
	client := salesv1connect.NewSalesServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC())
	// Warm up, so that the server's and client's goroutines exist before
	// the baseline.
	if _, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	addr := strings.TrimPrefix(h.url, "http://")
	var wg sync.WaitGroup
	cut := make(chan time.Duration, slowClients)
	for i := range slowClients {
		wg.Go(func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer conn.Close()
			start := time.Now()
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				_, _ = io.Copy(io.Discard, bufio.NewReader(conn))
			}()
			if _, err := fmt.Fprintf(conn, "POST /venta HTTP/1.1\r\nHost: x\r\n"); err != nil {
				return
			}
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-closed:
					cut <- time.Since(start)
					return
				case <-tick.C:
					if _, err := fmt.Fprintf(conn, "X-Slow-%d-%d: y\r\n", i, n); err != nil {
						<-closed
						cut <- time.Since(start)
						return
					}
					if time.Since(start) > timeout+hangBound {
						t.Errorf("slow client %d still connected after %v, want it cut at %v", i, time.Since(start), timeout)
						return
					}
				}
			}
		})
	}
	// While they dribble, a normal call is served at once.
	time.Sleep(timeout / 3)
	start := time.Now()
	if _, err := client.RecordSale(context.Background(), &salesv1.RecordSaleRequest{Sale: validSale()}); err != nil || time.Since(start) > timeout/3 {
		t.Errorf("RecordSale() during %d slow-header clients = %v after %v, want OK before they are cut", slowClients, err, time.Since(start))
	}
	wg.Wait()
	close(cut)
	var slowest time.Duration
	n := 0
	for d := range cut {
		slowest = max(slowest, d)
		n++
	}
	if n != slowClients || slowest > timeout+hangBound {
		t.Errorf("%d of %d slow-header clients cut, the last after %v, want all within about %v", n, slowClients, slowest, timeout)
	}
	// Every connection's goroutines are gone.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline+10 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > baseline+10 {
		t.Errorf("goroutines after %d slow-header clients = %d, want about %d (baseline)", slowClients, got, baseline)
	}
	if n := h.written(t); n != 2 {
		t.Errorf("topic holds %d records, want the 2 normal sales", n)
	}
}

// aggregatorMaxPoll is the most records the aggregator folds into one
// delta (the upper bound of its POLL_MAX_RECORDS).
const aggregatorMaxPoll = 1_000_000

// TestValidationCapsBoundSums reads the schema's caps and checks the
// arithmetic docs/security.md relies on: one sale's revenue (price times
// quantity), a whole RecordSales batch, and the largest batch the
// aggregator folds at once all fit in an int64, so no sum can overflow
// before it reaches the aggregator's checked additions (its Go fold and its
// Lua script refuse a sum that would not fit, rather than wrap). Raising a
// cap in the schema past these bounds fails this test. It also records the
// largest sales over the wire: accepted and written exactly.
func TestValidationCapsBoundSums(t *testing.T) {
	t.Parallel()
	rules := func(m proto.Message, field string) *validate.FieldRules {
		fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(field))
		r, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
		if r == nil {
			t.Fatalf("%s has no protovalidate rules", field)
		}
		return r
	}
	maxPrice := rules(&salesv1.Sale{}, "price_cents").GetInt64().GetLte()
	maxQuantity := int64(rules(&salesv1.Sale{}, "quantity").GetInt32().GetLte())
	maxBatch := int64(rules(&salesv1.RecordSalesRequest{}, "sales").GetRepeated().GetMaxItems())
	if maxPrice <= 0 || maxQuantity <= 0 || maxBatch <= 0 {
		t.Fatalf("caps: price %d, quantity %d, batch %d, want all set", maxPrice, maxQuantity, maxBatch)
	}
	fits := func(what string, a, b int64) int64 {
		if a > math.MaxInt64/b {
			t.Errorf("%s: %d × %d overflows int64", what, a, b)
			return 0
		}
		return a * b
	}
	perSale := fits("one sale's revenue", maxPrice, maxQuantity)
	fits("one RecordSales batch's revenue", perSale, maxBatch)
	fits("one aggregator fold's revenue", perSale, aggregatorMaxPoll)
	fits("one aggregator fold's price sum", maxPrice, aggregatorMaxPoll)
	t.Logf("caps: price ≤ %d cents, quantity ≤ %d, batch ≤ %d: revenue ≤ %d per sale; int64 holds %d such sales",
		maxPrice, maxQuantity, maxBatch, perSale, math.MaxInt64/perSale)

	h := newHarness(t, options{})
	batch := &salesv1.RecordSalesRequest{}
	for range maxBatch {
		s := validSale()
		s.PriceCents, s.Quantity = maxPrice, int32(maxQuantity)
		batch.Sales = append(batch.Sales, s)
	}
	resp, err := salesv1connect.NewSalesServiceClient(httpClient(t, false, true), h.url, connect.WithGRPC()).RecordSales(context.Background(), batch)
	if err != nil || resp.GetAccepted() != int32(maxBatch) {
		t.Fatalf("RecordSales(%d sales at the caps) = %v, %v, want all accepted", maxBatch, resp, err)
	}
	var revenue int64
	for _, r := range h.consume(t) {
		var s salesv1.Sale
		if err := proto.Unmarshal(r.Value, &s); err != nil {
			t.Fatal(err)
		}
		revenue += s.GetPriceCents() * int64(s.GetQuantity())
	}
	if want := perSale * maxBatch; revenue != want {
		t.Errorf("revenue of the written batch = %d, want %d", revenue, want)
	}
}
