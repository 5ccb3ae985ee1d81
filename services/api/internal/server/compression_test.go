package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"testing/iotest"
	"time"

	"connectrpc.com/connect"

	"blackfriday.local/services/api/internal/metrics"
)

func TestCompressionOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		contentType string
		header      map[string]string
		want        compression
	}{
		{"application/json", nil, uncompressed},
		{"application/proto", map[string]string{"Content-Encoding": "gzip"}, wholeBody},
		{"application/json", map[string]string{"Content-Encoding": "identity"}, uncompressed},
		{"application/grpc", map[string]string{"Grpc-Encoding": "gzip"}, enveloped},
		{"application/grpc+proto", map[string]string{"Content-Encoding": "gzip"}, uncompressed},
		{"application/grpc-web+proto", map[string]string{"Grpc-Encoding": "gzip"}, enveloped},
		{"application/grpc", nil, uncompressed},
		{"application/connect+proto", map[string]string{"Connect-Content-Encoding": "gzip"}, enveloped},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("Content-Type", tt.contentType)
		for k, v := range tt.header {
			r.Header.Set(k, v)
		}
		if got := compressionOf(r); got != tt.want {
			t.Errorf("compressionOf(%s %v) = %d, want %d", tt.contentType, tt.header, got, tt.want)
		}
	}
}

// TestEnvelopesCompletes feeds envelopes in every split and checks that
// completion is reported by the piece holding the last byte of a compressed
// message, and by no other.
func TestEnvelopesCompletes(t *testing.T) {
	t.Parallel()
	msg := []byte("0123456789")
	tests := []struct {
		name string
		body []byte
		// last is the offset of each compressed message's last byte.
		last []int
	}{
		{"compressed", frame(1, msg), []int{14}},
		{"uncompressed", frame(0, msg), nil},
		{"empty compressed", frame(1, nil), nil},
		{"two messages, the second compressed", append(frame(0, msg), frame(1, msg)...), []int{29}},
		{"an empty message, then a compressed one", append(frame(1, nil), frame(1, msg)...), []int{19}},
	}
	for _, tt := range tests {
		for cut := 1; cut <= len(tt.body); cut++ {
			// The body in pieces of cut bytes.
			var e envelopes
			var got []int
			for off := 0; off < len(tt.body); off += cut {
				end := min(off+cut, len(tt.body))
				if e.completes(tt.body[off:end]) {
					got = append(got, end-1)
				}
			}
			var want []int
			for _, l := range tt.last {
				want = append(want, min((l/cut+1)*cut, len(tt.body))-1)
			}
			if !equalInts(got, want) {
				t.Errorf("%s in pieces of %d: completes() true at the pieces ending %v, want %v", tt.name, cut, got, want)
			}
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestMeteredBodyAllowance reads compressed bodies a byte at a time: each
// byte is charged as it is read, and the allowance with the read that
// completes the message (gRPC: its last byte; Connect: the end of the
// body), before it is handed over. Without room for the allowance, that
// read fails instead, with resource_exhausted.
func TestMeteredBodyAllowance(t *testing.T) {
	t.Parallel()
	const allowance = 1000
	tests := []struct {
		name string
		comp compression
		body []byte
		// whole is how much has been handed over when the message is
		// whole: all but the last byte for gRPC, the body for Connect.
		whole int64
	}{
		{"gRPC", enveloped, frame(1, []byte("compressed")), 14},
		{"Connect", wholeBody, []byte("compressed"), 10},
	}
	for _, tt := range tests {
		for _, room := range []bool{true, false} {
			total := int64(len(tt.body) + allowance)
			if !room {
				total--
			}
			m := metrics.New()
			a := newAdmission(1, byteLimits{total: total, perClient: total, request: allowance, bodyTimeout: time.Second},
				&authPolicy{}, newErrorMapper(time.Second, testLogger()), m)
			body := &meteredBody{
				ReadCloser: io.NopCloser(iotest.OneByteReader(bytes.NewReader(tt.body))),
				a:          a, rc: http.NewResponseController(httptest.NewRecorder()), comp: tt.comp,
				share: a.clients.join(netip.Addr{}),
			}
			var read int64
			for {
				n, err := body.Read(make([]byte, 1))
				read += int64(n)
				if err != nil && !errors.Is(err, io.EOF) {
					if room || connect.CodeOf(err) != connect.CodeResourceExhausted || read != tt.whole {
						t.Errorf("%s, room %v: Read() after %d of %d bytes = %v, want resource_exhausted after %d only without room", tt.name, room, read, len(tt.body), err, tt.whole)
					}
					break
				}
				// The read that completes the message: the last byte
				// (gRPC), or the end after it (Connect).
				completing := read == int64(len(tt.body)) && (tt.comp == enveloped || errors.Is(err, io.EOF))
				want := read
				if completing {
					want += allowance
				}
				if got := a.held.Load(); got != want {
					t.Errorf("%s, room %v: held after %d of %d bytes (err %v) = %d, want %d", tt.name, room, read, len(tt.body), err, got, want)
				}
				if err != nil {
					if !room {
						t.Errorf("%s without room for the allowance: the body was read to its end", tt.name)
					}
					break
				}
			}
			a.release(body)
			if got := a.held.Load(); got != 0 {
				t.Errorf("%s, room %v: held after release = %d, want 0", tt.name, room, got)
			}
		}
	}
}
