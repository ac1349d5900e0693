#!/usr/bin/env bash
# bench/proxy.sh [SECONDS] — what `airlock proxy` costs per request, against nginx as the baseline,
# measured in the same run on the same machine (docs/proxy.md, bench/README.md).
#
# One TLS upstream (nginx answering a fixed 2 KiB JSON over HTTPS on loopback, certificate from a
# throw-away CA made with openssl), and in front of it, each on its own loopback port:
#   nginx    plain HTTP in, TLS to the upstream, a fixed Authorization header set (keepalive pool)
#   airlock  `airlock proxy` (release build): placeholder looked up, credential read from the vault,
#            TLS to the upstream, audit line written
# wrk (2 threads, 16 connections) drives each for SECONDS (default 10) and prints requests/s and
# latency percentiles; the script prints the ratios airlock/nginx, both proxies' memory (RSS) and
# their CPU time per request (less sensitive to other load on the machine than requests/s).
# The grant is written by hand without an engine: the proxy keeps such a grant for a minute.
# AIRLOCK_BENCH_CALLGRIND=FILE runs the proxy under `valgrind --tool=callgrind` (instrumentation off
# until the measured run: start-up and the first request are not counted) and prints its user-space
# instructions per request; requests/s and CPU time are then meaningless. Needs valgrind.
# AIRLOCK_BENCH_HOT_TEXT=FILE profiles the proxy's start and 20 requests instead (FILE.1) and
# stops there: scripts/hot-text.sh makes link/proxy-hot-text.ld from it.
# AIRLOCK_BENCH_PERF=FILE records the proxy's cpu-clock samples with call graphs during its run
# (`perf report -i FILE`); requests/s drop a little. Needs perf (linux-perf).
# AIRLOCK_BENCH_STRACE=FILE counts the proxy's system calls during its run and prints them per
# request (requests/s are then meaningless). Needs strace.
# Needs: nginx, wrk, openssl (scripts/install-test-deps.sh installs them), a release build (made here).
set -euo pipefail
secs="${1:-10}"
cd "$(dirname "$0")/.."
for c in nginx wrk openssl; do
  command -v "$c" >/dev/null 2>&1 || { echo "bench/proxy.sh: $c missing (scripts/install-test-deps.sh)" >&2; exit 1; }
done
# AIRLOCK_BENCH_BIN=PATH measures that binary instead of a fresh release build (an earlier
# build kept for a before/after comparison).
if [ -n "${AIRLOCK_BENCH_BIN:-}" ]; then
  airlock="$AIRLOCK_BENCH_BIN"
else
  cargo build --release --quiet --bin airlock
  airlock="$PWD/target/release/airlock"
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); NG=$(free_port); AP=$(free_port)

# a CA and a certificate for localhost
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=airlock-bench-ca \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$work/leaf.key" -out "$work/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$work/ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/ext" -out "$work/leaf.pem" 2>/dev/null

body=$(head -c 1500 /dev/zero | tr '\0' 'x')
# Two nginx instances, one worker each: the upstream, and the baseline proxy. The upstream is a
# process of its own, as it is for airlock: with both server blocks in one worker, nginx handed a
# request to its upstream inside its own event loop, without the context switches every real
# proxy (and airlock here) pays for the hop.
mkdir -p "$work/nginx-up" "$work/nginx"
nginx_conf() { # dir, server block
  cat <<CONF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1;
  uwsgi_temp_path $1; scgi_temp_path $1;
$2
}
CONF
}
nginx_conf "$work/nginx-up" "
  server {
    listen 127.0.0.1:$UP ssl;
    ssl_certificate $work/leaf.pem; ssl_certificate_key $work/leaf.key;
    location / { default_type application/json; return 200 '{\"id\":\"msg_bench\",\"pad\":\"$body\"}'; }
  }" > "$work/nginx-up.conf"
nginx_conf "$work/nginx" "
  upstream api { server 127.0.0.1:$UP; keepalive 32; }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass https://api;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host localhost;
      proxy_set_header Authorization \"Bearer sk-ant-oat01-bench-real-token\";
      proxy_ssl_trusted_certificate $work/ca.pem;
      proxy_ssl_verify on; proxy_ssl_name localhost; proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_buffering off;
    }
  }" > "$work/nginx.conf"
nginx -c "$work/nginx-up.conf" &
pids+=($!)
nginx -c "$work/nginx.conf" &
pids+=($!)

# airlock: a vault with the real token, a grant for a placeholder, the proxy
export AIRLOCK_CONFIG_DIR="$work/cfg" AIRLOCK_DATA_DIR="$work/data" AIRLOCK_STATE_DIR="$work/state" \
  AIRLOCK_RUNTIME_DIR="$work/run" AIRLOCK_KEYRING_BACKEND=file AIRLOCK_KEYRING_PASSWORD=bench-passphrase \
  HOME="$work"
printf 'sk-ant-oat01-bench-real-token-%s' "$(head -c 40 /dev/zero | tr '\0' 'r')" > "$work/token"
"$airlock" auth claude --method token --from-file "$work/token" >/dev/null 2>&1
ph="sk-ant-oat01-airlock-bench-placeholder-0123456789"
hash=$(printf '%s' "$ph" | sha256sum | cut -d' ' -f1)
mkdir -p "$work/state/proxy" && chmod 700 "$work/state" "$work/state/proxy"
cat > "$work/state/proxy/grants.json" <<JSON
{"version":1,"grants":[{"sandbox":"bench","agent":"claude","account":"default","method":"setup-token",
 "placeholder_sha256":"$hash","truth":{"kind":"vault","id":{"agent":"claude","account":"default"}},"created":"$(date -u +%FT%TZ)"}]}
JSON
chmod 600 "$work/state/proxy/grants.json"
wrap=()
if [ -n "${AIRLOCK_BENCH_CALLGRIND:-}" ]; then
  wrap=(valgrind --tool=callgrind --trace-children=yes --instr-atstart=no --callgrind-out-file="$AIRLOCK_BENCH_CALLGRIND")
elif [ -n "${AIRLOCK_BENCH_HOT_TEXT:-}" ]; then # scripts/hot-text.sh: from the start, per instruction
  wrap=(valgrind --tool=callgrind --trace-children=yes --dump-instr=yes --callgrind-out-file="$AIRLOCK_BENCH_HOT_TEXT")
fi
AIRLOCK_PROXY_UPSTREAM_CLAUDE="https://localhost:$UP" AIRLOCK_PROXY_CA_FILE="$work/ca.pem" \
  "${wrap[@]}" "$airlock" proxy --listen 127.0.0.1 --port "$AP" 2>"$work/proxy.log" &
apid=$!
pids+=($apid)

wait_http() { for _ in $(seq 400); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }
wait_http "http://127.0.0.1:$NG/"
wait_http "http://127.0.0.1:$AP/"
out=$(curl -s -H "authorization: Bearer $ph" "http://127.0.0.1:$AP/v1/messages")
case "$out" in *msg_bench*) ;; *) echo "airlock proxy did not forward: $out" >&2; exit 1 ;; esac
if [ -n "${AIRLOCK_BENCH_HOT_TEXT:-}" ]; then
  # what an idle proxy has run: its start and 20 requests (as `cargo bench --bench proxy` measures)
  for _ in $(seq 19); do curl -s -o /dev/null -H "authorization: Bearer $ph" "http://127.0.0.1:$AP/v1/messages"; done
  callgrind_control -d "$apid" >/dev/null # writes $AIRLOCK_BENCH_HOT_TEXT.1
  exit 0
fi

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # utime + stime, 1/100 s
uticks() { awk '{print $14}' "/proc/$1/stat" 2>/dev/null || echo 0; } # utime alone
run() { # name url
  ng0=$(ticks "$ngw"); ap0=$(ticks "$apid"); up0=$(ticks "$upw"); ngu0=$(uticks "$ngw"); apu0=$(uticks "$apid")
  wrk -t2 -c16 -d"${secs}s" --latency -H "authorization: Bearer $ph" "$2" > "$work/$1.wrk"
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$1.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$work/$1.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$work/$1.wrk")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' "$work/$1.wrk" | tr '\n' ' ')
  printf '%-8s %12s req/s   p50 %-9s p99 %-9s %s\n' "$1" "$rps" "$p50" "$p99" "$errs"
  ng1=$(ticks "$ngw"); ap1=$(ticks "$apid"); up1=$(ticks "$upw"); ngu1=$(uticks "$ngw"); apu1=$(uticks "$apid")
  # CPU time per request (us) of each proxy and of the upstream: other load on the machine
  # shows less here than in requests/s
  n=$(awk '/requests in/ {print $1}' "$work/$1.wrk")
  us() { awk -v a="$1" -v b="$2" -v n="$n" 'BEGIN { printf "%.1f", (b - a) * 10000 / n }'; }
  if [ "$1" = nginx ]; then
    eval "${1}_us=$(us "$ng0" "$ng1")"; eval "${1}_user_us=$(us "$ngu0" "$ngu1")"
  else
    eval "${1}_us=$(us "$ap0" "$ap1")"; eval "${1}_user_us=$(us "$apu0" "$apu1")"
  fi
  eval "${1}_up_us=$(us "$up0" "$up1")"
  eval "${1}_rps=$rps"
}
upw=$(pgrep -P "${pids[0]}" -n || true) # the upstream nginx's worker
ngw=$(pgrep -P "${pids[1]}" -n || true) # the baseline nginx's worker
echo "bench/proxy.sh: ${secs}s per proxy, wrk 2 threads x 16 connections, 1.5 KiB JSON responses over TLS"
run nginx "http://127.0.0.1:$NG/v1/messages"
if [ -n "${AIRLOCK_BENCH_CALLGRIND:-}" ]; then
  callgrind_control -i on "$apid" >/dev/null
  run airlock "http://127.0.0.1:$AP/v1/messages"
  callgrind_control -d "$apid" >/dev/null
  callgrind_control -i off "$apid" >/dev/null
  sleep 1
  n=$(awk '/requests in/ {print $1}' "$work/airlock.wrk")
  ir=$(ls -t "$AIRLOCK_BENCH_CALLGRIND"* | head -n 1 | xargs awk '/^summary:/ {print $2}')
  awk -v ir="$ir" -v n="$n" 'BEGIN { printf "callgrind: %.0f instructions over %d requests: %.0f per request\n", ir, n, ir / n }'
  exit 0
fi
if [ -n "${AIRLOCK_BENCH_STRACE:-}" ]; then
  # system calls of the proxy during its run (counts per call; times are strace's)
  strace -c -f -o "$AIRLOCK_BENCH_STRACE" -p "$apid" &
  stpid=$!
  sleep 0.5
fi
if [ -n "${AIRLOCK_BENCH_PERF:-}" ]; then
  # cpu-clock samples of the proxy alone during its run (no hardware counters needed)
  perf record -e cpu-clock -F 4999 -g -o "$AIRLOCK_BENCH_PERF" -p "$apid" -- sleep "$secs" >/dev/null 2>&1 &
  perfpid=$!
fi
run airlock "http://127.0.0.1:$AP/v1/messages"
if [ -n "${AIRLOCK_BENCH_PERF:-}" ]; then wait "$perfpid" || true; echo "perf samples: $AIRLOCK_BENCH_PERF"; fi
if [ -n "${AIRLOCK_BENCH_STRACE:-}" ]; then
  kill -INT "$stpid" 2>/dev/null || true; wait "$stpid" 2>/dev/null || true
  n=$(awk '/requests in/ {print $1}' "$work/airlock.wrk")
  echo "system calls per request (strace -c, $n requests):"
  awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" { printf "  %-16s %.2f\n", $NF, $4 / n }' "$AIRLOCK_BENCH_STRACE"
fi
rss() { awk '/VmRSS/ {print $2" kB"}' "/proc/$1/status" 2>/dev/null || echo "?"; }
echo "memory after the run: airlock proxy $(rss "$apid"); nginx worker $(rss "${ngw:-0}")"
awk -v a="$airlock_rps" -v n="$nginx_rps" 'BEGIN { printf "ratio airlock/nginx throughput: %.2f\n", a / n }'
echo "CPU per request: nginx ${nginx_us} us, airlock ${airlock_us} us" \
  "(the upstream: ${nginx_up_us} us, ${airlock_up_us} us)"
echo "  of it in user space: nginx ${nginx_user_us} us, airlock ${airlock_user_us} us (the rest is the kernel's: TCP on loopback)"
lines=$(wc -l < "$work/state/proxy/audit.jsonl")
echo "audit lines written by airlock: $lines, by status:"
python3 - "$work/state/proxy/audit.jsonl" <<'PY'
import collections, json, sys
c = collections.Counter()
for line in open(sys.argv[1]):
    e = json.loads(line)
    c[(e["status"], e.get("refused", ""))] += 1
for (status, why), n in sorted(c.items()):
    print(f"  {status} {why}: {n}")
PY
tail -n 3 "$work/proxy.log"
if grep -q "bench-real-token" "$work/state/proxy/audit.jsonl" "$work/proxy.log"; then
  echo "bench/proxy.sh: the real token appears in the audit log or the proxy log" >&2; exit 1
fi
