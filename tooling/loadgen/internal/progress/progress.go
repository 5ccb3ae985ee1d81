// Package progress draws a one-line progress bar on a terminal, and nothing
// at all when the output is not one (a pipe, a file, a CI log).
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// Bar is a progress bar on one terminal line. A nil *Bar draws nothing.
type Bar struct {
	mu    sync.Mutex
	w     io.Writer
	width int
	drawn bool
}

// New returns a bar drawing on w.
func New(w io.Writer) *Bar { return &Bar{w: w, width: 30} }

// ForTerminal returns a bar on f when f is a terminal, and nil otherwise.
func ForTerminal(f *os.File) *Bar {
	if !IsTerminal(f) {
		return nil
	}
	return New(f)
}

// IsTerminal reports whether f is a character device, as a terminal is.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Draw redraws the bar at fraction done (0 to 1) with a status text.
func (b *Bar) Draw(done float64, status string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	done = min(max(done, 0), 1)
	full := int(done * float64(b.width))
	fmt.Fprintf(b.w, "\r\x1b[K[%s%s] %3.0f%% %s", strings.Repeat("#", full), strings.Repeat("-", b.width-full), done*100, status)
	b.drawn = true
}

// Done clears the bar's line.
func (b *Bar) Done() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.drawn = false
	}
}
