package server

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Pinger reports whether a dependency answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// readyTimeout bounds each dependency check of /readyz.
const readyTimeout = 2 * time.Second

// readiness is the /readyz body. It names no addresses: probes and load
// balancers only need to know which dependency is missing.
type readiness struct {
	Ready        bool   `json:"ready"`
	Kafka        string `json:"kafka"`
	Valkey       string `json:"valkey"`
	ShuttingDown bool   `json:"shutting_down"`
}

// healthz answers while the process serves HTTP at all.
func healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when Kafka and Valkey both answer and the server is not
// shutting down, 503 otherwise, saying which.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	var kafkaErr, valkeyErr error
	var wg sync.WaitGroup
	wg.Go(func() { kafkaErr = s.kafka.Ping(ctx) })
	wg.Go(func() { valkeyErr = s.valkey.Ping(ctx) })
	wg.Wait()

	body := readiness{
		Kafka:        state(kafkaErr),
		Valkey:       state(valkeyErr),
		ShuttingDown: s.shuttingDown.Load(),
	}
	body.Ready = kafkaErr == nil && valkeyErr == nil && !body.ShuttingDown
	status := http.StatusOK
	if !body.Ready {
		status = http.StatusServiceUnavailable
		s.log.Debug("not ready", "kafka", kafkaErr, "valkey", valkeyErr, "shutting_down", body.ShuttingDown)
	}
	writeJSON(w, status, body)
}

func state(err error) string {
	if err != nil {
		return "unreachable"
	}
	return "ok"
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
