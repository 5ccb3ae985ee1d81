package process

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// Tail returns the last n lines of each file that has any, each headed by
// its name: what a failed start shows, so that its cause is in the message.
func Tail(n int, paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&b, "\n----- last %d lines of %s -----\n%s", min(n, len(lines)), p, strings.Join(lines[max(0, len(lines)-n):], "\n"))
	}
	return b.String()
}

// AppendTo opens path for appending, creating it: the log a daemon writes
// its output to, kept across its restarts.
func AppendTo(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}
