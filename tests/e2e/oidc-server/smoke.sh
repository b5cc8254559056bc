#!/usr/bin/env bash
# Smoke test for server.js: starts it, drives it with curl, checks the
# behaviour credlock's e2e tests rely on. Needs bash, curl, node; run
# `npm ci` here first. Exits non-zero on the first failed check.
set -euo pipefail
cd "$(dirname "$0")"

[ -d node_modules/oidc-provider ] || { echo "run 'npm ci' in $(pwd) first" >&2; exit 2; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }

# jget JSON FIELD -> prints the field (strings raw, others as JSON)
jget() {
  node -e 'const v = JSON.parse(process.argv[1])[process.argv[2]];
           process.stdout.write(typeof v === "string" ? v : JSON.stringify(v));' "$1" "$2"
}
# application/x-www-form-urlencoded encoding (RFC 6749 §2.3.1 / Appendix B)
formenc() {
  node -e 'process.stdout.write(encodeURIComponent(process.argv[1])
           .replace(/[!'"'"'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase())
           .replace(/%20/g, "+"))' "$1"
}
basic_header() {
  printf 'Authorization: Basic %s' "$(printf '%s:%s' "$(formenc "$1")" "$(formenc "$2")" | base64 -w0)"
}

# start_server NAME ARGS... -> sets BASE, prints start-up time
start_server() {
  local name=$1; shift
  local t0; t0=$(date +%s%N)
  node server.js "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 200); do
    if [ -s "$tmp/$name.out" ] && grep -q '}' "$tmp/$name.out"; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/$name.err" >&2; fail "$name exited before ready"; }
    sleep 0.025
  done
  local t1; t1=$(date +%s%N)
  local line; line=$(head -n1 "$tmp/$name.out")
  [ "$(jget "$line" ready)" = true ] || fail "$name: no ready line: $line"
  [ "$(wc -l <"$tmp/$name.out")" -eq 1 ] || fail "$name: more than one stdout line"
  BASE=$(jget "$line" issuer)
  PID=$pid
  ok "$name ready in $(( (t1 - t0) / 1000000 )) ms: $line"
}

# post_json PATH JSON -> body
post_json() { curl -sS -X POST "$BASE$1" -H 'content-type: application/json' -d "$2"; }

# refresh CLIENT RT -> writes status to $tmp/status, body to $tmp/body
refresh() {
  local client=$1 rt=$2; local -a auth=()
  case $client in
    cli-basic) auth=(-H "$(basic_header cli-basic 'p@ss:w/rd+%&=?')") ;;
    cli-post) auth=(--data-urlencode client_id=cli-post --data-urlencode client_secret=post-secret-1) ;;
    cli-public) auth=(--data-urlencode client_id=cli-public) ;;
  esac
  curl -sS -o "$tmp/body" -w '%{http_code}' "$BASE/token" \
    -d grant_type=refresh_token --data-urlencode "refresh_token=$rt" "${auth[@]}" >"$tmp/status"
}
status() { cat "$tmp/status"; }
body() { cat "$tmp/body"; }
active() { jget "$(post_json /test/introspect "{\"token\":\"$1\"}")" active; }

start_server main

for client in cli-basic cli-post cli-public; do
  seed=$(post_json /test/seed "{\"client_id\":\"$client\"}")
  rt0=$(jget "$seed" refresh_token)
  [ "$(jget "$seed" token_type)" = Bearer ] && [ "$(jget "$seed" expires_in)" = 3600 ] \
    && [ "$(jget "$seed" scope)" = 'openid offline_access' ] || fail "$client seed: $seed"
  [ "$(active "$rt0")" = true ] || fail "$client: seeded refresh token not active"

  refresh "$client" "$rt0"
  [ "$(status)" = 200 ] || fail "$client refresh: $(status) $(body)"
  rt1=$(jget "$(body)" refresh_token)
  [ -n "$rt1" ] && [ "$rt1" != "$rt0" ] || fail "$client: refresh token did not rotate"
  [ "$(active "$rt0")" = false ] && [ "$(active "$rt1")" = true ] || fail "$client: rotation state"
  ok "$client refresh 200, rotated; fields: $(node -e 'console.log(Object.keys(JSON.parse(process.argv[1])).join(","))' "$(body)")"

  refresh "$client" "$rt0"   # reuse of the consumed token
  [ "$(status)" = 400 ] && [ "$(jget "$(body)" error)" = invalid_grant ] || fail "$client reuse: $(status) $(body)"
  [ "$(active "$rt1")" = false ] || fail "$client: grant not revoked after reuse"
  ok "$client reuse -> 400 $(body); new token now inactive"

  refresh "$client" "$rt1"
  [ "$(status)" = 400 ] || fail "$client: refresh with revoked token: $(status) $(body)"
done

stats=$(curl -sS "$BASE/test/stats")
[ "$stats" = '{"refresh_ok":3,"refresh_invalid_grant":6,"refresh_other_error":0,"reuse_detected":3,"device_authorizations":0,"device_polls":0,"device_slow_down":0,"device_grants":0,"code_grants":0}' ] \
  || fail "stats: $stats"
ok "stats $stats"

# Client authentication failures.
seed=$(post_json /test/seed '{"client_id":"cli-basic","expired_access":true}')
[ "$(jget "$seed" expires_in)" = 0 ] || fail "expired_access: $seed"
rt=$(jget "$seed" refresh_token)
code=$(curl -sS -o "$tmp/body" -w '%{http_code}' -D "$tmp/hdr" "$BASE/token" -d grant_type=refresh_token \
  --data-urlencode "refresh_token=$rt" -H "$(basic_header cli-basic wrong)")
[ "$code" = 401 ] && [ "$(jget "$(body)" error)" = invalid_client ] || fail "wrong secret: $code $(body)"
ok "wrong secret -> 401 $(body); $(grep -i '^www-authenticate' "$tmp/hdr" | tr -d '\r')"
code=$(curl -sS -o "$tmp/body" -w '%{http_code}' "$BASE/token" -d grant_type=refresh_token \
  --data-urlencode "refresh_token=$rt" -u 'cli-basic:p@ss:w/rd+%&=?')
# The raw secret's "%&" is not valid percent-encoding, so the server refuses
# the header itself (400 invalid_request) before even checking the secret.
[ "$code" = 400 ] && [ "$(jget "$(body)" error)" = invalid_request ] \
  || fail "curl -u (not form-urlencoded) should be rejected: $code $(body)"
ok "curl -u without form-urlencoding -> $code $(body)"
code=$(curl -sS -o "$tmp/body" -w '%{http_code}' "$BASE/token" -d grant_type=refresh_token \
  --data-urlencode "refresh_token=$rt")
[ "$code" = 400 ] && [ "$(jget "$(body)" error)" = invalid_request ] || fail "no client auth: $code $(body)"
ok "no client auth -> $code $(body)"
[ "$(active "$rt")" = true ] || fail "failed client auth must not touch the token"

# /test/revoke-grant
refresh cli-basic "$rt"; [ "$(status)" = 200 ] || fail "refresh: $(status) $(body)"
rt2=$(jget "$(body)" refresh_token)
[ "$(post_json /test/revoke-grant "{\"token\":\"$rt2\"}")" = '{"revoked":true}' ] || fail revoke-grant
[ "$(active "$rt2")" = false ] || fail "revoke-grant left token active"
refresh cli-basic "$rt2"; [ "$(status)" = 400 ] || fail "refresh after revoke-grant: $(status)"
ok "revoke-grant -> token inactive, refresh 400 $(body)"

# RFC 7662 introspection and RFC 7009 revocation endpoints.
seed=$(post_json /test/seed '{"client_id":"cli-post"}')
rt=$(jget "$seed" refresh_token)
intro=$(curl -sS "$BASE/token/introspection" -d client_id=cli-post -d client_secret=post-secret-1 \
  --data-urlencode "token=$rt")
[ "$(jget "$intro" active)" = true ] || fail "introspection: $intro"
ok "RFC 7662 introspection: $intro"
code=$(curl -sS -o "$tmp/body" -w '%{http_code}' "$BASE/token/revocation" -d client_id=cli-post \
  -d client_secret=post-secret-1 --data-urlencode "token=$rt" -d token_type_hint=refresh_token)
[ "$code" = 200 ] && [ "$(active "$rt")" = false ] || fail "revocation: $code $(body)"
ok "RFC 7009 revocation -> $code '$(body)', token inactive"

post_json /test/reset-stats '' >/dev/null
[ "$(curl -sS "$BASE/test/stats")" = '{"refresh_ok":0,"refresh_invalid_grant":0,"refresh_other_error":0,"reuse_detected":0,"device_authorizations":0,"device_polls":0,"device_slow_down":0,"device_grants":0,"code_grants":0}' ] \
  || fail reset-stats
ok "reset-stats"

# Concurrent reuse: two refreshes of one token sent in parallel by one curl.
# race RT -> sorted status codes, e.g. "200 400"
race() {
  curl -sS --no-progress-meter -Z --parallel-immediate -o /dev/null -o /dev/null -w '%{http_code}\n' \
    "$BASE/token" "$BASE/token" -d grant_type=refresh_token --data-urlencode "refresh_token=$1" \
    -d client_id=cli-post -d client_secret=post-secret-1 | sort | tr '\n' ' ' | sed 's/ $//'
}
# In-memory store: whatever the interleaving, exactly one wins and the other
# is detected as reuse (and revokes the grant).
seed=$(post_json /test/seed '{"client_id":"cli-post"}')
codes=$(race "$(jget "$seed" refresh_token)")
stats=$(curl -sS "$BASE/test/stats")
[ "$codes" = "200 400" ] && [ "$(jget "$stats" reuse_detected)" = 1 ] || fail "fast race: $codes $stats"
ok "2 parallel refreshes of one token (fast store): $codes -> stats $stats"

kill "$PID"; wait "$PID" 2>/dev/null || true
ok "main server stopped on SIGTERM"

start_server slow --slow-storage-ms 1 --access-ttl 5
seed=$(post_json /test/seed '{"client_id":"cli-post"}')
[ "$(jget "$seed" expires_in)" = 5 ] || fail "--access-ttl: $seed"
codes=$(race "$(jget "$seed" refresh_token)")
stats=$(curl -sS "$BASE/test/stats")
# Expected "200 200" (the grant forks, reuse not detected); timing-dependent,
# so only reported.
ok "2 parallel refreshes of one token (--slow-storage-ms 1): $codes -> stats $stats"

kill "$PID"; wait "$PID" 2>/dev/null || true
[ "$(wc -l <"$tmp/main.out")" -eq 1 ] || fail "stdout of main has more than the ready line: $(cat "$tmp/main.out")"
ok "stdout held only the ready line"

echo "all checks passed"
