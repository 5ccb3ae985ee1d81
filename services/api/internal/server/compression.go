package server

import (
	"encoding/binary"
	"net/http"
	"strings"
)

// compression is how a request body carries compressed messages, which
// tells admission when one is whole. connect-go (v1.21) decompresses a
// message only once it has all of it, into a buffer of up to
// MaxRequestBytes:
//
//   - a Connect unary body is one message, named compressed by
//     Content-Encoding: it is read to the end, then decompressed;
//   - gRPC, gRPC-Web and Connect streaming bodies are enveloped: each
//     message has a 5-byte prefix, a flags byte whose lowest bit marks it
//     compressed and its length, and is decompressed once that many bytes
//     have been read.
type compression int

const (
	// uncompressed bodies are never decompressed.
	uncompressed compression = iota
	// wholeBody: the whole body is one compressed message.
	wholeBody
	// enveloped: messages in envelopes, those flagged compressed.
	enveloped
)

// compressionOf tells how r's body carries compressed messages. A request
// that names no encoding is never decompressed, whatever its envelopes
// claim (connect-go refuses a compressed envelope then).
func compressionOf(r *http.Request) compression {
	mt := mediaType(r.Header)
	switch {
	case strings.HasPrefix(mt, "application/grpc"):
		return namedEncoding(r, "Grpc-Encoding", enveloped)
	case strings.HasPrefix(mt, "application/connect+"):
		return namedEncoding(r, "Connect-Content-Encoding", enveloped)
	}
	return namedEncoding(r, "Content-Encoding", wholeBody)
}

// namedEncoding is c if header names an encoding other than identity.
func namedEncoding(r *http.Request, header string, c compression) compression {
	if v := r.Header.Get(header); v != "" && !strings.EqualFold(v, "identity") {
		return c
	}
	return uncompressed
}

// envelopes follows the envelopes of a body as it is read.
type envelopes struct {
	prefix [5]byte
	// have is how much of the current prefix has been read.
	have int
	// left is how much of the current message is still to come.
	left int64
	// compressed: the current message is flagged compressed.
	compressed bool
}

// completes follows p, the next bytes of the body, and reports whether they
// complete a compressed, non-empty message (connect-go decompresses no empty
// one).
func (e *envelopes) completes(p []byte) bool {
	whole := false
	for len(p) > 0 {
		if e.have < len(e.prefix) {
			n := copy(e.prefix[e.have:], p)
			e.have, p = e.have+n, p[n:]
			if e.have == len(e.prefix) {
				e.left = int64(binary.BigEndian.Uint32(e.prefix[1:]))
				e.compressed = e.prefix[0]&1 != 0
				if e.left == 0 {
					e.have = 0
				}
			}
			continue
		}
		n := min(int64(len(p)), e.left)
		e.left, p = e.left-n, p[n:]
		if e.left == 0 {
			e.have = 0
			whole = whole || e.compressed
		}
	}
	return whole
}
