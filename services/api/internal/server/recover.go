package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"

	"connectrpc.com/connect"
)

// recoverRPC turns a handler panic into an internal error for the client and
// a logged stack for us (used with connect.WithRecover).
func recoverRPC(log *slog.Logger) func(context.Context, connect.Spec, http.Header, any) error {
	return func(_ context.Context, spec connect.Spec, _ http.Header, v any) error {
		log.Error("panic in handler", "procedure", spec.Procedure, "panic", v, "stack", string(debug.Stack()))
		return connect.NewError(connect.CodeInternal, errors.New("internal error"))
	}
}

// recoverHTTP does the same for the plain HTTP handlers (legacy REST, health),
// which connect.WithRecover does not cover. http.ErrAbortHandler keeps its
// meaning: abort the response quietly.
func recoverHTTP(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { //nolint:errorlint // the sentinel is panicked as is
				panic(v)
			}
			log.Error("panic in handler", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			// If the handler had already written, this only appends; the
			// client sees a broken response either way.
			writeJSON(w, http.StatusInternalServerError, map[string]string{
				"error": connect.CodeInternal.String(), "message": "internal error",
			})
		}()
		next.ServeHTTP(w, r)
	})
}
