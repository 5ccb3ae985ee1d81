// Package auth checks the bearer tokens that callers of the api's write RPCs
// (and, when configured, its read RPCs) present in their Authorization
// header.
//
// Tokens are opaque shared secrets, one per client or per client fleet,
// delivered to the server in a file mounted from a Kubernetes Secret. The
// server keeps only their SHA-256 digests and compares a presented token's
// digest with every accepted one in constant time, so neither the time taken
// nor an early exit tells a caller how close a guess came. No token, good or
// bad, is ever logged or put in an error.
package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"
)

// The errors Check returns. Their text is safe for clients and logs: it
// never quotes the token.
var (
	// ErrNoToken means the request carried no bearer token.
	ErrNoToken = errors.New("missing bearer token")
	// ErrBadToken means the request carried a token that is not accepted,
	// or an Authorization header that is not a bearer token.
	ErrBadToken = errors.New("invalid bearer token")
)

// MinTokenLength is the shortest token accepted in configuration: a token
// is a random secret, not a password a person types.
const MinTokenLength = 16

// Tokens is a set of accepted bearer tokens. The zero value accepts none.
type Tokens struct {
	digests [][sha256.Size]byte
}

// Len returns the number of distinct accepted tokens.
func (t *Tokens) Len() int { return len(t.digests) }

// Load builds the set from a file of tokens, one per line (blank lines and
// lines starting with # are ignored), and from a comma-separated list; either
// may be empty. A token must be at least MinTokenLength characters of the
// RFC 6750 token alphabet (letters, digits and -._~+/ with trailing =), so
// that it can travel in a header as is. Errors name the file and line, never
// the token.
func Load(file, list string) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[sha256.Size]byte]bool{}
	add := func(token, where string) error {
		if err := checkToken(token); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		d := sha256.Sum256([]byte(token))
		if !seen[d] {
			seen[d] = true
			t.digests = append(t.digests, d)
		}
		return nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read tokens: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := add(line, fmt.Sprintf("%s line %d", file, n)); err != nil {
				return nil, err
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read tokens from %s: %w", file, err)
		}
		if len(t.digests) == 0 {
			return nil, fmt.Errorf("%s holds no token", file)
		}
	}
	for i, token := range strings.Split(list, ",") {
		if token = strings.TrimSpace(token); token != "" {
			if err := add(token, fmt.Sprintf("token %d of the list", i+1)); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

// checkToken rejects a token too short or holding characters a bearer
// token cannot carry.
func checkToken(token string) error {
	if len(token) < MinTokenLength {
		return fmt.Errorf("a token must be at least %d characters long", MinTokenLength)
	}
	body := strings.TrimRight(token, "=")
	if body == "" {
		return errors.New("a token must not be only '=' signs")
	}
	for i := 0; i < len(body); i++ {
		if !isToken68(body[i]) {
			return fmt.Errorf("a token may hold only letters, digits and -._~+/ (and trailing =); character %d does not", i+1)
		}
	}
	return nil
}

func isToken68(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~+/", c) >= 0
}

// Check reports whether an Authorization header value carries an accepted
// bearer token: nil, ErrNoToken or ErrBadToken. The comparison takes the same
// time whichever token matches, or none.
func (t *Tokens) Check(header string) error {
	token, ok := bearer(header)
	switch {
	case header == "":
		return ErrNoToken
	case !ok:
		return ErrBadToken
	}
	d := sha256.Sum256([]byte(token))
	match := 0
	for i := range t.digests {
		// No early exit: every digest is compared.
		match |= subtle.ConstantTimeCompare(d[:], t.digests[i][:])
	}
	if match != 1 {
		return ErrBadToken
	}
	return nil
}

// bearer extracts the token of an "Authorization: Bearer <token>" header;
// the scheme is case-insensitive (RFC 9110, 11.1).
func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
