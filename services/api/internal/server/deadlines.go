package server

import (
	"context"
	"net/http"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// deadlines bounds each request by its kind, in place of the server-wide
// ReadTimeout and WriteTimeout, which would cut every stream.
//
// A unary RPC or plain HTTP request must be read within read and answered
// within write of its start: per-request deadlines, set through
// http.ResponseController, as the server-wide timeouts did, and the
// request's context ends at the write deadline. A streaming RPC
// gets no overall deadline, since it is meant to last; instead each write of
// its response must finish within streamWrite, so a client that stops
// reading is cut off rather than holding a goroutine forever. Every request
// sets both deadlines, because on HTTP/1.1 they belong to the connection and
// would otherwise carry over from the previous request.
func deadlines(streaming map[string]bool, read, write, streamWrite time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if streaming[r.URL.Path] {
			// Errors mean the writer cannot take deadlines (a test
			// recorder, say): there is nothing to bound then.
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
			next.ServeHTTP(&streamWriter{ResponseWriter: w, rc: rc, timeout: streamWrite}, r)
			return
		}
		start := time.Now()
		_ = rc.SetReadDeadline(start.Add(read))
		_ = rc.SetWriteDeadline(start.Add(write))
		// Past the write deadline no answer can be sent: stop the work too.
		// (HTTP/2 resets the stream then; HTTP/1.1 would let the handler
		// run on and fail only when it writes.)
		ctx, cancel := context.WithDeadline(r.Context(), start.Add(write))
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// streamWriter gives each write and flush of a streaming response its own
// deadline, and clears it afterwards: on HTTP/2 a deadline is a timer that
// resets the stream when it fires, even between writes.
type streamWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *streamWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	defer w.rc.SetWriteDeadline(time.Time{}) //nolint:errcheck // best effort, as above
	return w.ResponseWriter.Write(p)
}

// Flush sends what was written; streaming RPCs need it (connect-go checks
// for http.Flusher).
func (w *streamWriter) Flush() {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	defer w.rc.SetWriteDeadline(time.Time{}) //nolint:errcheck // best effort, as above
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// streamingPaths returns the HTTP paths of every streaming method of every
// service linked into the binary (ours, and gRPC reflection's), from their
// registered descriptors.
func streamingPaths() map[string]bool {
	paths := map[string]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		services := f.Services()
		for i := range services.Len() {
			svc := services.Get(i)
			methods := svc.Methods()
			for j := range methods.Len() {
				m := methods.Get(j)
				if m.IsStreamingClient() || m.IsStreamingServer() {
					paths["/"+string(svc.FullName())+"/"+string(m.Name())] = true
				}
			}
		}
		return true
	})
	return paths
}
