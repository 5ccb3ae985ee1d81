// Package valkeytest connects tests to a real Valkey or Redis server, the
// way httptest gives them a real HTTP server.
package valkeytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"blackfriday.local/contract/testenv"
)

// Addr returns the test server's address (contract/testenv). Without one,
// the test is skipped, or fails when CI=true, because CI must not pass by
// skipping.
func Addr(tb testing.TB) string {
	tb.Helper()
	return testenv.Valkey(tb)
}

// New returns a client of the test server and a key prefix no other test
// uses. The prefix's keys are deleted and the client closed when the test
// ends.
func New(tb testing.TB) (rueidis.Client, string) {
	tb.Helper()
	addr := Addr(tb)
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		tb.Fatalf("connect to %s: %v", addr, err)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatalf("random prefix: %v", err)
	}
	prefix := "bftest:" + hex.EncodeToString(b[:]) + ":"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := Delete(ctx, client, prefix); err != nil {
			tb.Errorf("delete test keys %s*: %v", prefix, err)
		}
		client.Close()
	})
	return client, prefix
}

// Keys returns the keys under prefix, sorted.
func Keys(ctx context.Context, client rueidis.Client, prefix string) ([]string, error) {
	return Match(ctx, client, prefix+"*")
}

// Match returns the keys matching the glob pattern, sorted.
func Match(ctx context.Context, client rueidis.Client, pattern string) ([]string, error) {
	var keys []string
	var cursor uint64
	for {
		entry, err := client.Do(ctx, client.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", pattern, err)
		}
		keys = append(keys, entry.Elements...)
		cursor = entry.Cursor
		if cursor == 0 {
			break
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// Delete removes every key under prefix.
func Delete(ctx context.Context, client rueidis.Client, prefix string) error {
	keys, err := Keys(ctx, client, prefix)
	if err != nil {
		return err
	}
	for chunk := range slices.Chunk(keys, 500) {
		if err := client.Do(ctx, client.B().Del().Key(chunk...).Build()).Error(); err != nil {
			return fmt.Errorf("delete %d keys: %w", len(chunk), err)
		}
	}
	return nil
}

// Snapshot renders every key under prefix, with its type and whole content,
// so that two snapshots compare equal exactly when nothing was written in
// between. Stream entry ids and TTLs are included.
func Snapshot(ctx context.Context, client rueidis.Client, prefix string) (map[string]string, error) {
	keys, err := Keys(ctx, client, prefix)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		typ, err := client.Do(ctx, client.B().Type().Key(k).Build()).ToString()
		if err != nil {
			return nil, fmt.Errorf("type %s: %w", k, err)
		}
		var body string
		switch typ {
		case "hash":
			m, err := client.Do(ctx, client.B().Hgetall().Key(k).Build()).AsStrMap()
			if err != nil {
				return nil, fmt.Errorf("hgetall %s: %w", k, err)
			}
			fields := make([]string, 0, len(m))
			for f, v := range m {
				fields = append(fields, f+"="+v)
			}
			slices.Sort(fields)
			body = strings.Join(fields, " ")
		case "zset":
			zs, err := client.Do(ctx, client.B().Zrange().Key(k).Min("0").Max("-1").Withscores().Build()).AsZScores()
			if err != nil {
				return nil, fmt.Errorf("zrange %s: %w", k, err)
			}
			for _, z := range zs {
				body += fmt.Sprintf("%s=%v ", z.Member, z.Score)
			}
		case "stream":
			entries, err := client.Do(ctx, client.B().Xrange().Key(k).Start("-").End("+").Build()).AsXRange()
			if err != nil {
				return nil, fmt.Errorf("xrange %s: %w", k, err)
			}
			for _, e := range entries {
				body += fmt.Sprintf("%s%v ", e.ID, e.FieldValues)
			}
		default:
			s, err := client.Do(ctx, client.B().Dump().Key(k).Build()).ToString()
			if err != nil {
				return nil, fmt.Errorf("dump %s: %w", k, err)
			}
			body = hex.EncodeToString([]byte(s))
		}
		ttl, err := client.Do(ctx, client.B().Ttl().Key(k).Build()).AsInt64()
		if err != nil {
			return nil, fmt.Errorf("ttl %s: %w", k, err)
		}
		if ttl >= 0 {
			// Seconds tick between snapshots; record only that it expires.
			body += " (expires)"
		}
		out[k] = typ + " " + body
	}
	return out, nil
}
