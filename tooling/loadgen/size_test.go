package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tableLines returns the lines of Markdown tables in s.
func tableLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "|") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// TestCapacityDocMatchesSize checks that the tables of docs/capacity.md
// between its size markers are what `loadgen size -check` prints from the
// committed costs, so that the document cannot drift from them.
func TestCapacityDocMatchesSize(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "capacity.md"))
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- loadgen size: begin -->", "<!-- loadgen size: end -->"
	_, rest, ok := strings.Cut(string(doc), begin)
	section, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("docs/capacity.md has no %q … %q section", begin, end)
	}
	// The make capacity command, from the repository's root.
	t.Chdir(root)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"size", "-rate", "10000,100000,1000000", "-check"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	got, want := tableLines(section), tableLines(out.String())
	if len(want) == 0 {
		t.Fatalf("loadgen size printed no table:\n%s", out.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("docs/capacity.md's tables differ from loadgen size's; paste these between the markers:\n%s\n\ndocument has:\n%s",
			strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
}

func TestSizeFlags(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-rate", "0"}, "positive"},
		{[]string{"-rate", "ten"}, "positive"},
		{[]string{"-in", "/nonexistent/results.json"}, "no such file"},
		{[]string{"-in", "testdata/nocosts.json"}, "no costs"},
	} {
		err := run(context.Background(), append([]string{"size"}, tt.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("loadgen size %q: error %v, want one with %q", tt.args, err, tt.want)
		}
	}
}
