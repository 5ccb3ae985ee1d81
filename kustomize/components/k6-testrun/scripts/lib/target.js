// Where the scripts send their calls, and with what credentials.

// plaintext reports whether to skip TLS: only when asked for, with
// PLAINTEXT=true (or 1), as the local stack and the api Service inside the
// cluster need (the api speaks cleartext; TLS ends at the Gateway).
export function plaintext(value) {
  return value === 'true' || value === '1';
}

// authHeaders returns the bearer token header for writes (docs/security.md),
// or none without a token, as dev and staging accept.
export function authHeaders(token, name) {
  return token ? { [name]: `Bearer ${token}` } : {};
}
