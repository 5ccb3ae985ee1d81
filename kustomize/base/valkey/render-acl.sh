#!/bin/sh
# Renders /run/valkey/users.acl (a memory-backed emptyDir) from acl-rules and
# the passwords in the environment (Secret valkey-users: NAME-password ->
# NAME_PASSWORD). Only SHA-256 hashes reach the file; it is never on disk.
set -eu
rules=${ACL_RULES:-/config/acl-rules}
out=${ACL_FILE:-/run/valkey/users.acl}
umask 077
tmp="$out.tmp"
: >"$tmp"
while read -r name rest; do
  case "$name" in '' | '#'*) continue ;; esac
  var="$(printf '%s' "$name" | tr 'a-z-' 'A-Z_')_PASSWORD"
  eval "pass=\${$var:-}"
  if [ -z "$pass" ]; then
    echo "render-acl: $var is empty: set key $name-password in Secret valkey-users" >&2
    exit 1
  fi
  hash="$(printf '%s' "$pass" | sha256sum | cut -d ' ' -f 1)"
  printf 'user %s on #%s %s\n' "$name" "$hash" "$rest" >>"$tmp"
done <"$rules"
printf 'user default off resetpass resetkeys resetchannels -@all\n' >>"$tmp"
mv "$tmp" "$out"
echo "render-acl: wrote $(wc -l <"$out") users to $out"
