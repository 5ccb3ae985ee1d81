package store

import (
	"regexp"
	"slices"
	"testing"

	"blackfriday.local/contract/keys"
)

// TestScriptFields holds the hash fields apply.lua names itself (the
// prices it sets by comparison rather than by increment; every other field
// arrives in ARGV) to the key schema's.
func TestScriptFields(t *testing.T) {
	t.Parallel()
	var got []string
	for _, m := range regexp.MustCompile(`'(\w+_cents)'`).FindAllStringSubmatch(applySource, -1) {
		if !slices.Contains(got, m[1]) {
			got = append(got, m[1])
		}
	}
	slices.Sort(got)
	if want := []string{keys.FieldMaxPriceCents, keys.FieldMinPriceCents}; !slices.Equal(got, want) {
		t.Errorf("apply.lua names the fields %q, want %q", got, want)
	}
}
