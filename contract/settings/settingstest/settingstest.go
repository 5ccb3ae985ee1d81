// Package settingstest holds the checks each service's tests run on the
// settings it declares: the declarations themselves, the README's table of
// them, and the kustomize manifests that set them.
package settingstest

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"blackfriday.local/contract/settings"
)

// CheckDeclared checks the declarations themselves: every setting
// explained, named once, and every Go field once (the library's errors
// name fields, and Parse turns them back into names).
func CheckDeclared(t testing.TB, declared []settings.Setting) {
	t.Helper()
	names, fields := map[string]bool{}, map[string]bool{}
	for _, s := range declared {
		// A | would end a cell of the README's table.
		if s.Help == "" || strings.Contains(s.Help+s.DefaultText, "|") {
			t.Errorf("%s: help %q, want some, without |", s.Name, s.Help)
		}
		if s.Default != "" && s.DefaultText != "" {
			t.Errorf("%s has both a default and defaultText", s.Name)
		}
		if names[s.Name] || fields[s.Field] {
			t.Errorf("%s (field %s) is declared twice", s.Name, s.Field)
		}
		names[s.Name], fields[s.Field] = true, true
	}
}

// CheckREADME checks that the Markdown file at path holds, between the
// markers of service's settings, the table that declared makes. With
// update (go generate) it rewrites the table instead.
func CheckREADME(t testing.TB, path, service string, declared []settings.Setting, update bool) {
	t.Helper()
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
	table := []byte(settings.Table(declared))
	if bytes.Equal(old, table) {
		return
	}
	if !update {
		t.Fatalf("%s's table of %s settings is stale: run go generate ./services/%[2]s\nwant:\n%s", path, service, table)
	}
	out := bytes.Join([][]byte{before, begin, table, end, after}, nil)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
