package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	tokenA = "tokenA-0123456789abcdef"
	tokenB = "tokenB_0123456789+/~.-=="
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string // content; "" for no file
		list    string
		wantLen int
	}{
		{"nothing", "", "", 0},
		{"list", "", tokenA + " , " + tokenB + ",", 2},
		{"file", "# api clients\n" + tokenA + "\r\n\n  " + tokenB + "  \n", "", 2},
		{"file and list, duplicates once", tokenA + "\n" + tokenA + "\n", tokenA + "," + tokenB, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := ""
			if tt.file != "" {
				file = writeFile(t, tt.file)
			}
			got, err := Load(file, tt.list)
			if err != nil || got.Len() != tt.wantLen {
				t.Fatalf("Load(%q, %q) = %d tokens, %v, want %d", tt.file, tt.list, got.Len(), err, tt.wantLen)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	const short = "short-token"
	tests := []struct {
		name    string
		file    *string
		list    string
		wantErr string
	}{
		{"short token in the list", nil, short, "token 1 of the list: a token must be at least 16 characters long"},
		{"space inside", nil, tokenA + ",with space 0123456789", "token 2 of the list: a token may hold only"},
		{"quote inside", ptr(`"` + tokenA + `"` + "\n"), "", "line 1: a token may hold only"},
		{"only equals signs", nil, strings.Repeat("=", 20), "only '=' signs"},
		{"empty file", ptr("# no tokens yet\n\n"), "", "holds no token"},
		{"short token on line 2", ptr(tokenA + "\n" + short + "\n"), "", "line 2: a token must be at least 16 characters long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := ""
			if tt.file != nil {
				file = writeFile(t, *tt.file)
			}
			_, err := Load(file, tt.list)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load(%s) = %v, want an error with %q", tt.name, err, tt.wantErr)
			}
			for _, secret := range []string{short, tokenA, "with space"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("Load(%s) error %q quotes a token", tt.name, err)
				}
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing"), ""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing file) = %v, want os.ErrNotExist", err)
	}
}

func ptr(s string) *string { return &s }

func TestCheck(t *testing.T) {
	t.Parallel()
	tokens, err := Load("", tokenA+","+tokenB)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		header string
		want   error
	}{
		{"Bearer " + tokenA, nil},
		{"Bearer " + tokenB, nil},
		{"bearer " + tokenA, nil},
		{"BEARER  " + tokenA + " ", nil},
		{"", ErrNoToken},
		{"Bearer", ErrBadToken},
		{"Bearer ", ErrBadToken},
		{tokenA, ErrBadToken},
		{"Basic " + tokenA, ErrBadToken},
		{"Bearer " + tokenA[:len(tokenA)-1], ErrBadToken},
		{"Bearer " + tokenA + "x", ErrBadToken},
		{"Bearer " + strings.ToUpper(tokenA), ErrBadToken},
		{"Bearer " + tokenA + "," + tokenB, ErrBadToken},
	}
	for _, tt := range tests {
		if got := tokens.Check(tt.header); !errors.Is(got, tt.want) || (tt.want == nil) != (got == nil) {
			t.Errorf("Check(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
	var none Tokens
	if got := none.Check("Bearer " + tokenA); !errors.Is(got, ErrBadToken) {
		t.Errorf("Tokens{}.Check(a token) = %v, want ErrBadToken", got)
	}
	for _, err := range []error{ErrNoToken, ErrBadToken} {
		if strings.Contains(err.Error(), tokenA) {
			t.Errorf("%v quotes a token", err)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	tokens, err := Load("", tokenA+","+tokenB)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = tokens.Check("Bearer " + tokenB)
	}
}
