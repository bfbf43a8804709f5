#!/bin/bash
# Extra benchmarks (`make bench`, after run-intake.sh).  Not a test: it
# prints figures.  About a minute on loopback.  One PostgreSQL, one simulated
# ComfyUI that hangs every job (`--hang`), one nginx (2 workers) with:
#   - /v1/txt2img (API key on) and /v1/open (flowscale_api_key off), the
#     same deployment, backend: the simulator;
#   - 100 deployments /v1/d001 ... /v1/d100 (conf/workflows/txt2img.json)
#     on an upstream of 50 servers (the simulator and 49 ports nothing
#     listens on; flowscale_health_interval 1h);
#   - /metrics and /flowscale/status.
# It measures:
#   1. auth cost (issue 5): GET L/runs/<unknown uuid> (a 404 after the key
#      check) with flowscale_api_key off vs a cached key, wrk 16 connections
#      5 s each, interleaved twice; then 100,000 keys in the database and
#      wrk cycling through them (mostly cache misses): lookups/s from the
#      flowscale.key_lookups sequence;
#   2. memory of 2,000 idle event streams (issue 4) on a run that hangs:
#      nginx workers' RSS before/after, and their CPU over 5 s meanwhile;
#   3. render time of /metrics and /flowscale/status (issue 7), 200 each.
# Everything it started is stopped on exit.  BENCH_KEEP=1 keeps the work
# directory.  BENCH_STREAMS (2000), BENCH_KEYS (100000) change the sizes.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench=$top/bench
module=$top/build/ngx_http_flowscale_module.so
nginx=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
py=/usr/bin/python3
streams=${BENCH_STREAMS:-2000}
nkeys=${BENCH_KEYS:-100000}
conns=16

say() { echo "extras: $*" >&2; }
die() { echo "extras: $*" >&2; exit 1; }

[ -f "$module" ] || die "no $module (run: make build)"
command -v wrk >/dev/null || die "wrk is not installed (run: make deps)"
pgbin=$("$top/t/bin/pg-cluster" bindir)
# 2,000 streams: a socket each here and in nginx
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)       # nginx's worker_rlimit_nofile: no more than that

work=$(mktemp -d "${TMPDIR:-/tmp}/flowscale-extras.XXXXXX")
chmod 755 "$work"
pids=()
ngx_pid_file=$work/nginx/logs/nginx.pid

stop_all() {
    local rc=$? p i
    trap - EXIT INT TERM
    exec 9>&- 2>/dev/null || true     # the stream client's stdin
    if [ -f "$ngx_pid_file" ]; then
        p=$(cat "$ngx_pid_file" 2>/dev/null || true)
        if [ -n "$p" ] && kill -QUIT "$p" 2>/dev/null; then
            for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null || true
        fi
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    "$top/t/bin/pg-cluster" stop "$work/pg" >/dev/null 2>&1 || true
    if [ "${BENCH_KEEP:-0}" = 1 ] || [ $rc != 0 ]; then
        say "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit $rc
}
trap stop_all EXIT
trap 'exit 130' INT TERM

read -r pg_port sim front <<<"$($py - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)"

psql_fs() {  # SQL
    "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" \
        -U flowscale -d flowscale -c "$1"
}
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# ------------------------------------------------------------ fixtures

say "PostgreSQL on 127.0.0.1:$pg_port"
"$top/t/bin/pg-cluster" start "$work/pg" "$pg_port" >"$work/pg-cluster.log" 2>&1 ||
    { cat "$work/pg-cluster.log" >&2; die "PostgreSQL did not start"; }
psql_fs "SELECT flowscale.create_project('bench')" >/dev/null
key=$(psql_fs "SELECT flowscale.create_api_key('bench', 'bench')")

# the simulator: every job stops after its first node until told otherwise
mkdir -p "$work/sim"
"$py" "$top/t/sim/comfyui_sim.py" --port "$sim" --dir "$work/sim" --hang \
    >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/sim.log" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$work/sim.log" || { cat "$work/sim.log" >&2; die "simulator did not start"; }

mkdir -p "$work/nginx/conf/workflows" "$work/nginx/logs"
cp "$module" "$work/nginx/ngx_http_flowscale_module.so"
cp "$top/conf/workflows/txt2img.json" "$work/nginx/conf/workflows/"

# 100 deployments of txt2img and an upstream of 50 servers (49 not
# listening: ports 40001..40049 on 127.0.0.1, only probed once an hour)
{
    echo "upstream many {"
    echo "    server 127.0.0.1:$sim;"
    for i in $(seq 1 49); do echo "    server 127.0.0.1:$((40000 + i));"; done
    echo "}"
} >"$work/nginx/conf/upstream.conf"
for i in $(seq -w 1 100); do
    cat <<EOC
location /v1/d$i {
    flowscale_deployment d$i;
    flowscale_workflow   workflows/txt2img.json;
    flowscale_input      prompt 6.text required;
    flowscale_input      seed   3.seed default=random;
    flowscale_output     result 9;
    flowscale_backend    many;
}
EOC
done >"$work/nginx/conf/deployments.conf"

cat >"$work/nginx/conf/nginx.conf" <<EOF
load_module $work/nginx/ngx_http_flowscale_module.so;

worker_processes 2;
worker_rlimit_nofile $nofile;
error_log logs/error.log warn;
pid logs/nginx.pid;

events {
    worker_connections 16384;
}

http {
    access_log off;
    default_type application/octet-stream;

    flowscale_database "hostaddr=127.0.0.1 port=$pg_port dbname=flowscale user=flowscale" pool=4;
    flowscale_zone bench:32m;
    flowscale_health_interval 1h;

    upstream comfyui {
        server 127.0.0.1:$sim;
    }
    include upstream.conf;

    server {
        listen 127.0.0.1:$front backlog=4096;
        flowscale_project bench;

        location /v1/txt2img {
            flowscale_deployment txt2img;
            flowscale_workflow   workflows/txt2img.json;
            flowscale_input      prompt 6.text required;
            flowscale_input      seed   3.seed default=random;
            flowscale_output     result 9;
            flowscale_backend    comfyui;
        }

        # the same deployment without the key check
        location /v1/open {
            flowscale_deployment txt2img;
            flowscale_workflow   workflows/txt2img.json;
            flowscale_input      prompt 6.text required;
            flowscale_input      seed   3.seed default=random;
            flowscale_output     result 9;
            flowscale_backend    comfyui;
            flowscale_api_key    off;
        }

        include deployments.conf;

        location = /metrics          { flowscale_metrics; }
        location = /flowscale/status { flowscale_status; }
    }
}
EOF

"$nginx" -p "$work/nginx" -c conf/nginx.conf -t -q || die "nginx -t failed"
"$nginx" -p "$work/nginx" -c conf/nginx.conf
for _ in $(seq 50); do [ -s "$ngx_pid_file" ] && break; sleep 0.1; done
[ -s "$ngx_pid_file" ] || die "nginx did not start"
base=http://127.0.0.1:$front
auth="Authorization: Bearer $key"
say "nginx on 127.0.0.1:$front"

workers() { ps -o pid= --ppid "$(cat "$ngx_pid_file")"; }
rss_kb() {  # sum of the nginx workers' VmRSS
    local p
    for p in $(workers); do cat "/proc/$p/status"; done |
        awk '/^VmRSS:/ { t += $2 } END { print t + 0 }'
}
pss_kb() {  # the same in Pss: shared pages (the zone, the config) split
    local p
    for p in $(workers); do cat "/proc/$p/smaps_rollup"; done |
        awk '/^Pss:/ { t += $2 } END { print t + 0 }'
}
ticks() {  # user + system clock ticks of the nginx workers
    local p
    for p in $(workers); do cat "/proc/$p/stat"; done |
        awk '{ t += $14 + $15 } END { print t + 0 }'
}
lookups() { psql_fs "SELECT last_value FROM flowscale.key_lookups"; }

for _ in $(seq 100); do
    curl -sS "$base/v1/txt2img" 2>/dev/null | grep -q '"state": *"ready"' && break
    sleep 0.1
done
curl -sS "$base/v1/txt2img" | grep -q '"state": *"ready"' ||
    die "deployment txt2img is not ready"
sleep 1
idle_rss=$(rss_kb)
idle_pss=$(pss_kb)

# ------------------------------------------------------------ 1. auth

# a uuid no run has: 404 after the key check, nothing asked of PostgreSQL
# (the key is cached after the first request)
nx=00000000-0000-7000-8000-000000000000
for p in open txt2img; do
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H "$auth" "$base/v1/$p/runs/$nx")
    [ "$code" = 404 ] || die "GET /v1/$p/runs/$nx answered $code, not 404"
done
[ "$(curl -sS -o /dev/null -w '%{http_code}' "$base/v1/txt2img/runs/$nx")" = 401 ] ||
    die "/v1/txt2img does not ask for a key"

wrk_rps() {  # NAME PATH [HEADER]: req/s (every status counts)
    wrk -t1 -c$conns -d5s ${3:+-H "$3"} "$base$2" >"$work/$1.wrk" 2>&1 ||
        { cat "$work/$1.wrk" >&2; die "wrk $1 failed"; }
    sed -n 's/^Requests\/sec: *//p' "$work/$1.wrk"
}
say "auth: key off vs cached key, $conns connections, 5 s each, twice"
l0=$(lookups)
off1=$(wrk_rps off1 "/v1/open/runs/$nx")
on1=$(wrk_rps on1 "/v1/txt2img/runs/$nx" "$auth")
off2=$(wrk_rps off2 "/v1/open/runs/$nx")
on2=$(wrk_rps on2 "/v1/txt2img/runs/$nx" "$auth")
cached_lookups=$(( $(lookups) - l0 ))
off=$(calc %.0f "($off1 + $off2) / 2")
on=$(calc %.0f "($on1 + $on2) / 2")
cost=$(calc %.1f "(1 - $on / $off) * 100")

say "auth: $nkeys keys in the database"
# keys fs_<id>_<secret> made in SQL; only their hash is stored, the keys
# themselves go to a file for wrk (the same expressions twice: the secret
# is md5 of i, which is fine for a benchmark)
psql_fs "INSERT INTO flowscale.api_keys (key_id, project, label, key_hash)
         SELECT 'b' || lpad(i::text, 11, '0'), 'bench', 'bench',
                sha256(convert_to('fs_b' || lpad(i::text, 11, '0') || '_'
                                  || md5(i::text), 'UTF8'))
         FROM generate_series(1, $nkeys) AS i"
psql_fs "SELECT 'fs_b' || lpad(i::text, 11, '0') || '_' || md5(i::text)
         FROM generate_series(1, $nkeys) AS i ORDER BY random()" >"$work/keys.txt"
code=$(curl -sS -o /dev/null -w '%{http_code}' \
    -H "Authorization: Bearer $(head -n 1 "$work/keys.txt")" "$base/v1/txt2img/runs/$nx")
[ "$code" = 404 ] || die "a generated key answered $code, not 404"

say "auth: uncached lookups, $conns connections, 5 s"
l0=$(lookups); t0=$(date +%s.%N)
wrk -t1 -c$conns -d5s -s "$bench/wrk/keys.lua" "$base/v1/txt2img/runs/$nx" \
    -- "$work/keys.txt" >"$work/keys.wrk" 2>&1 ||
    { cat "$work/keys.wrk" >&2; die "wrk keys failed"; }
t1=$(date +%s.%N); l1=$(lookups)
k_req=$(sed -n 's/^WRK .*requests=\([0-9]*\).*/\1/p' "$work/keys.wrk")
k_us=$(sed -n 's/^WRK .*duration_us=\([0-9]*\).*/\1/p' "$work/keys.wrk")
k_err=$(sed -n 's/^WRK .* errors=\([0-9]*\).*/\1/p' "$work/keys.wrk")
k_rps=$(calc %.0f "$k_req / ($k_us / 1e6)")
k_lps=$(calc %.0f "($l1 - $l0) / ($t1 - $t0)")
k_miss=$(calc %.0f "($l1 - $l0) * 100 / ($k_req > 0 ? $k_req : 1)")
# what the keys answer, checked on a sample with curl: all should be 404
k_codes=$(sed -n '1000,1019p' "$work/keys.txt" | while read -r k; do
    curl -sS -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $k" \
        "$base/v1/txt2img/runs/$nx"; done | sort | uniq -c | xargs)

# ------------------------------------------------------------ 2. streams

say "streams: a run that hangs, $streams idle GET L/runs/ID/events"
status=$(curl -sS -o "$work/post.body" -w '%{http_code}' -H "$auth" \
    -H 'Content-Type: application/json' -d '{"inputs": {"prompt": "a fox"}}' \
    "$base/v1/txt2img")
[ "$status" = 202 ] || { cat "$work/post.body" >&2; die "POST answered $status"; }
run_id=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/post.body")
for _ in $(seq 50); do
    curl -sS -H "$auth" "$base/v1/txt2img/runs/$run_id" | grep -q '"status": *"running"' && break
    sleep 0.1
done
run_status=$(curl -sS -H "$auth" "$base/v1/txt2img/runs/$run_id" |
    $py -c 'import json,sys; print(json.load(sys.stdin)["status"])')
sleep 1
rss0=$(rss_kb)
# the client holds the streams until its stdin (a fifo) is closed
mkfifo "$work/hold"
"$py" "$bench/sse_hold.py" 127.0.0.1 "$front" "/v1/txt2img/runs/$run_id/events" \
    "$key" "$streams" <"$work/hold" >"$work/hold.out" 2>&1 &
pids+=($!)
exec 9>"$work/hold"
for _ in $(seq 400); do grep -q '^ready' "$work/hold.out" && break; sleep 0.1; done
grep -q '^ready' "$work/hold.out" ||
    { cat "$work/hold.out" >&2; die "the stream client did not get ready"; }
read -r _ s_ok s_failed < <(grep '^ready' "$work/hold.out")
sleep 1
rss1=$(rss_kb)
c0=$(ticks); t0=$(date +%s.%N)
sleep 5
c1=$(ticks); t1=$(date +%s.%N)
rss2=$(rss_kb)
s_cpu=$(calc %.2f "($c1 - $c0) / $(getconf CLK_TCK) / ($t1 - $t0) * 100")
s_delta=$(( rss2 - rss0 ))
s_per=$(calc %.1f "$s_delta / ($s_ok > 0 ? $s_ok : 1)")
exec 9>&-      # the client exits, the streams close

# ------------------------------------------------------------ 3. render

say "render: /metrics and /flowscale/status, 200 each"
render=$("$py" "$bench/render_times.py" "$base" 200)
r() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$render"; }
deps=$(curl -sS "$base/flowscale/status" | $py -c \
    'import json,sys; d=json.load(sys.stdin); print(len(d["deployments"]), "deployments,", len(d["backends"]), "backends")' \
    2>/dev/null || echo "? deployments, ? backends")

alerts=$(grep -c '\[alert\]\|\[emerg\]\|\[crit\]' "$work/nginx/logs/error.log" || true)
crashes=$(grep -c 'exited on signal' "$work/nginx/logs/error.log" || true)

# ------------------------------------------------------------ the table

mb() { calc %.1f "$1 / 1024"; }
echo
echo "FlowScale extras, loopback, $(nproc) CPUs, nginx 2 workers, wrk 1 thread"
echo
echo "1. API key (GET L/runs/<unknown id>, a 404 after the key check; $conns connections, 5 s x 2)"
printf '   %-32s %s req/s  (%s, %s)\n' "flowscale_api_key off" "$off" "$off1" "$off2"
printf '   %-32s %s req/s  (%s, %s)\n' "cached key (Bearer)" "$on" "$on1" "$on2"
printf '   %-32s %s%%  (goal <= 5%%; %s database lookups during these runs)\n' "cost of the key" "$cost" "$cached_lookups"
printf '   %-32s %s lookups/s, %s req/s, %s%% of requests looked up;\n' \
    "uncached, $nkeys keys" "$k_lps" "$k_rps" "$k_miss"
printf '   %-32s sample statuses: %s; socket errors: %s\n' "" "$k_codes" "$k_err"
echo
echo "2. idle event streams (one run, $run_status: the simulator hangs)"
printf '   %-32s %s MB, %s MB per worker  (goal < 32 MB)\n' "idle workers' RSS (2 workers)" \
    "$(mb "$idle_rss")" "$(calc %.1f "$idle_rss / 2048")"
printf '   %-32s %s MB  (shared pages split among the processes that map them)\n' \
    "idle workers' Pss (2 workers)" "$(mb "$idle_pss")"
printf '   %-32s %s  (%s failed)\n' "streams open" "$s_ok" "$s_failed"
printf '   %-32s %s -> %s MB  (+%s MB; %s MB 1 s after opening)\n' "workers' RSS before -> after" \
    "$(mb "$rss0")" "$(mb "$rss2")" "$(mb "$s_delta")" "$(mb "$rss1")"
printf '   %-32s %s KB\n' "per stream" "$s_per"
printf '   %-32s %s%% of one CPU  (goal ~0)\n' "workers' CPU, 5 s, streams open" "$s_cpu"
echo
echo "3. render time, 200 GETs each ($deps)"
printf '   %-32s p50 %s ms, p99 %s ms  (%s bytes)\n' "/metrics" \
    "$(r metrics_p50_ms)" "$(r metrics_p99_ms)" "$(r metrics_bytes)"
printf '   %-32s p50 %s ms, p99 %s ms  (%s bytes; goal < 1 ms)\n' "/flowscale/status" \
    "$(r status_p50_ms)" "$(r status_p99_ms)" "$(r status_bytes)"
echo
echo "nginx error log: $alerts alert/crit/emerg, $crashes worker crashes"
if [ "$alerts" != 0 ]; then
    grep '\[alert\]\|\[emerg\]\|\[crit\]' "$work/nginx/logs/error.log" \
        | sed 's/^[0-9/]* [0-9:]* //; s/, client: .*//' | sort | uniq -c | head -n 5
fi
