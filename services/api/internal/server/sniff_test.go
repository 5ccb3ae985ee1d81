package server

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	"golang.org/x/net/http2"
)

// TestIsGRPCProto: only native gRPC with protobuf goes to grpc-go.
func TestIsGRPCProto(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bool{
		"application/grpc":                true,
		"application/grpc+proto":          true,
		"application/grpc; charset=utf-8": true,
		"application/grpc+json":           false,
		"application/grpc-web":            false,
		"application/grpc-web+proto":      false,
		"application/proto":               false,
		"application/json":                false,
		"":                                false,
	} {
		if got := isGRPCProto(ct); got != want {
			t.Errorf("isGRPCProto(%q) = %v, want %v", ct, got, want)
		}
	}
}

// TestAckFilter: the replayed connection drops the client's first SETTINGS
// acknowledgement, the one of the split listener's SETTINGS, and passes
// every other byte through unchanged.
func TestAckFilter(t *testing.T) {
	t.Parallel()
	frame := func(typ http2.FrameType, flags http2.Flags, payload ...byte) []byte {
		n := len(payload)
		return append([]byte{byte(n >> 16), byte(n >> 8), byte(n), byte(typ), byte(flags), 0, 0, 0, 1}, payload...)
	}
	settings := frame(http2.FrameSettings, 0, 0, 3, 0, 0, 0, 100)
	ack := frame(http2.FrameSettings, http2.FlagSettingsAck)
	headers := frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 0x82, 0x86)
	data := frame(http2.FrameData, 0, bytes.Repeat([]byte{7}, 100)...)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	preface := []byte(http2.ClientPreface)
	for _, tt := range []struct {
		name     string
		in, want []byte
	}{
		{"ack after the headers", cat(preface, settings, headers, ack, data, ack), cat(preface, settings, headers, data, ack)},
		{"ack first", cat(preface, ack, settings, headers), cat(preface, settings, headers)},
		{"no ack", cat(preface, settings, headers, data), cat(preface, settings, headers, data)},
		{"an oversized frame stops the filtering", cat(preface, []byte{0x01, 0, 0, 0, 0, 0, 0, 0, 1}, ack), cat(preface, []byte{0x01, 0, 0, 0, 0, 0, 0, 0, 1}, ack)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// One byte at a time, as a slow connection may give them.
			got, err := io.ReadAll(&ackFilter{src: iotest.OneByteReader(bytes.NewReader(tt.in)), prefaceLeft: len(preface)})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("ackFilter(%x) = %x, want %x", tt.in, got, tt.want)
			}
		})
	}
}
