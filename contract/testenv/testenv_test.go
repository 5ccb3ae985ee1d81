package testenv_test

import (
	"fmt"
	"testing"

	"blackfriday.local/contract/testenv"
)

// recorder is a testing.TB that records how a test would have ended.
type recorder struct {
	testing.TB
	ended string // "", "skipped" or "failed"
	msg   string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.ended, r.msg = "skipped", fmt.Sprintf(format, args...)
	panic(r)
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.ended, r.msg = "failed", fmt.Sprintf(format, args...)
	panic(r)
}

// need runs testenv.Need on a recorder, which ends it as the testing
// package would, and returns the recorder.
func need(name string) (r *recorder, got string) {
	r = &recorder{}
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
	}()
	return r, testenv.Need(r, name, "how")
}

func TestNeed(t *testing.T) {
	const name = "BF_TEST_TESTENV_PROBE"
	tests := []struct {
		value, ci string
		want      string // how the test ends: "" (it goes on), "skipped" or "failed"
	}{
		{value: "127.0.0.1:1", ci: "", want: ""},
		{value: "127.0.0.1:1", ci: "true", want: ""},
		{value: "", ci: "", want: "skipped"},
		{value: "", ci: "false", want: "skipped"},
		{value: "", ci: "true", want: "failed"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s=%q,CI=%q", name, tt.value, tt.ci), func(t *testing.T) {
			t.Setenv(name, tt.value)
			t.Setenv("CI", tt.ci)
			r, got := need(name)
			if r.ended != tt.want {
				t.Errorf("Need() ended the test %q (%s), want %q", r.ended, r.msg, tt.want)
			}
			if tt.want == "" && got != tt.value {
				t.Errorf("Need() = %q, want %q", got, tt.value)
			}
		})
	}
}
