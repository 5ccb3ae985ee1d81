package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the settings table in the repository's README.md")

// TestREADMESettings checks that README.md's table of the service's
// settings is the one its declarations make; with -update
// (go generate) it rewrites the table instead.
func TestREADMESettings(t *testing.T) {
	path := filepath.Join("..", "..", "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin := fmt.Appendf(nil, "<!-- %s settings: generated from services/%[1]s/config.go by go generate ./services/%[1]s -->\n", service)
	end := fmt.Appendf(nil, "<!-- end of %s settings -->\n", service)
	before, rest, ok := bytes.Cut(readme, begin)
	old, after, ok2 := bytes.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("%s has no %q ... %q around the %s's settings", path, begin, end, service)
	}
	table := []byte(settingsTable(declared()))
	if bytes.Equal(old, table) {
		return
	}
	if !*update {
		t.Fatalf("%s's table of %s settings is stale: run go generate ./services/%[2]s\nwant:\n%s", path, service, table)
	}
	out := bytes.Join([][]byte{before, begin, table, end, after}, nil)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// settingsTable renders settings as a Markdown table.
func settingsTable(settings []setting) string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, s := range settings {
		def := "empty"
		switch {
		case s.def != "":
			def = "`" + s.def + "`"
		case s.defText != "":
			def = markdown(s.defText)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.name, def, markdown(s.describe()))
	}
	return b.String()
}

// markdown sets help's 'quoted' words in backticks. The \B keep an
// apostrophe (a client's) from opening one.
func markdown(s string) string {
	return regexp.MustCompile(`\B'([^'\s][^']*?)'\B`).ReplaceAllString(s, "`$1`")
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"'0' sends at once":                          "`0` sends at once",
		"each call's latency; 'off' disables":        "each call's latency; `off` disables",
		"comma-separated 'https://host[:port]', '*'": "comma-separated `https://host[:port]`, `*`",
		"('/debug/pprof/') on 'METRICS_ADDR'":        "(`/debug/pprof/`) on `METRICS_ADDR`",
		"the system's roots, the brokers' names":     "the system's roots, the brokers' names",
	}
	for in, want := range tests {
		if got := markdown(in); got != want {
			t.Errorf("markdown(%q) = %q, want %q", in, got, want)
		}
	}
}
