#!/bin/bash
# Run intake benchmark (`make bench`).  Not a test: it prints figures.
#
# In one run on loopback it starts a private PostgreSQL, two simulated
# ComfyUI servers and one nginx with the module, and measures with wrk:
#   - plain nginx `proxy_pass` of the same JSON body to a stub (a second
#     server block of the same nginx answering `return 202` with the bytes
#     POST L answers), keepalive to the stub;
#   - PostgreSQL's own rate for the same row: pgbench calling
#     flowscale.accept_run() with the inputs and prompt a real POST L wrote,
#     a fresh gen_random_uuid() per transaction, extended protocol (as the
#     module's PQsendQueryParams), as many clients as wrk has connections,
#     in a copy of the flowscale database made before nginx started;
#   - POST L of a 30-node workflow (bench/workflows/bench30.json) with
#     flowscale_backend_depth 1, so runs pile up in the gateway queue and
#     intake is what is measured;
#   - latency at about half of POST L's peak rate, for POST L and for the
#     proxy at the same offered rate (wrk has no -R: each connection pauses
#     a random time after each response, see bench/wrk/intake.lua);
#   - GET L (the descriptor) against nginx `return 200` of the same bytes.
# and prints a table.  Everything it started is stopped on exit.
#
# Environment: BENCH_CONNS (16) connections and pgbench clients,
# BENCH_TIME (10) seconds per measured phase, BENCH_DEPTH (1)
# flowscale_backend_depth, BENCH_POOL (4) flowscale_database pool per
# worker, BENCH_WORKERS (2) nginx worker_processes, BENCH_KEEP=1 keeps the
# work directory (logs) and prints where it is.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench=$top/bench
module=$top/build/ngx_http_flowscale_module.so
nginx=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
py=/usr/bin/python3

conns=${BENCH_CONNS:-16}
secs=${BENCH_TIME:-10}
depth=${BENCH_DEPTH:-1}
pool=${BENCH_POOL:-4}
workers=${BENCH_WORKERS:-2}

say() { echo "bench: $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

[ -f "$module" ] || die "no $module (run: make build)"
command -v wrk >/dev/null || die "wrk is not installed (run: make deps)"
pgbin=$("$top/t/bin/pg-cluster" bindir)
[ -x "$pgbin/pgbench" ] || die "no pgbench in $pgbin (run: make deps)"

work=$(mktemp -d "${TMPDIR:-/tmp}/flowscale-bench.XXXXXX")
chmod 755 "$work"          # the postgres user and nginx workers look in
pids=()
ngx_pid_file=$work/nginx/logs/nginx.pid

stop_all() {
    local rc=$? p i
    trap - EXIT INT TERM
    if [ -f "$ngx_pid_file" ]; then
        p=$(cat "$ngx_pid_file" 2>/dev/null || true)
        if [ -n "$p" ] && kill -QUIT "$p" 2>/dev/null; then
            for i in $(seq 100); do
                kill -0 "$p" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$p" 2>/dev/null; then
                say "nginx did not quit within 10 s of QUIT; sent TERM"
                kill -TERM "$p" 2>/dev/null || true
            fi
        fi
    fi
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
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

# ports: free ones, picked by the kernel
read -r pg_port sim1 sim2 front stub <<<"$($py - <<'EOF'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)"

psql_fs() {  # DB SQL [USER]
    "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" \
        -U "${3:-flowscale}" -d "$1" -c "$2"
}

# ------------------------------------------------------------ fixtures

say "PostgreSQL on 127.0.0.1:$pg_port"
"$top/t/bin/pg-cluster" start "$work/pg" "$pg_port" >"$work/pg-cluster.log" 2>&1 ||
    { cat "$work/pg-cluster.log" >&2; die "PostgreSQL did not start"; }
psql_fs flowscale "SELECT flowscale.create_project('bench')" >/dev/null
key=$(psql_fs flowscale "SELECT flowscale.create_api_key('bench', 'bench')")
# pgbench writes into a copy of the schema, so its rows never meet the
# module's queue (made now: CREATE DATABASE needs the template unused)
psql_fs postgres \
    "CREATE DATABASE flowscale_pgbench TEMPLATE flowscale OWNER flowscale" postgres

for p in "$sim1" "$sim2"; do
    mkdir -p "$work/sim-$p"
    "$py" "$top/t/sim/comfyui_sim.py" --port "$p" --dir "$work/sim-$p" \
        --step-time 0.01 >"$work/sim-$p.log" 2>&1 &
    pids+=($!)
done
for p in "$sim1" "$sim2"; do
    for _ in $(seq 100); do
        grep -q listening "$work/sim-$p.log" 2>/dev/null && break
        sleep 0.1
    done
    grep -q listening "$work/sim-$p.log" ||
        { cat "$work/sim-$p.log" >&2; die "simulator on $p did not start"; }
done
say "simulated ComfyUI on $sim1 and $sim2 (step time 0.01 s)"

mkdir -p "$work/nginx/conf/workflows" "$work/nginx/logs"
# a copy: a rebuild during the run does not change what is measured, and
# profilers still find its symbols
cp "$module" "$work/nginx/ngx_http_flowscale_module.so"
cp "$bench/workflows/bench30.json" "$work/nginx/conf/workflows/"
# replaced below by the bytes GET L and POST L answer
echo "return 200 '{}';" >"$work/nginx/conf/static.conf"
echo "return 202 '{}';" >"$work/nginx/conf/stub.conf"

cat >"$work/nginx/conf/nginx.conf" <<EOF
load_module $work/nginx/ngx_http_flowscale_module.so;

worker_processes $workers;
error_log logs/error.log warn;
pid logs/nginx.pid;

events {
    worker_connections 4096;
}

http {
    access_log off;
    default_type application/octet-stream;

    flowscale_database "hostaddr=127.0.0.1 port=$pg_port dbname=flowscale user=flowscale" pool=$pool;
    flowscale_zone bench:128m;

    upstream comfyui {
        server 127.0.0.1:$sim1;
        server 127.0.0.1:$sim2;
    }

    upstream stub {
        server 127.0.0.1:$stub;
        keepalive 32;
    }

    server {
        listen 127.0.0.1:$front;
        flowscale_project bench;

        # a text-to-image graph with prompt building and four outputs
        location /v1/bench30 {
            flowscale_deployment bench30;
            flowscale_workflow   workflows/bench30.json;
            flowscale_input      subject   2.value  label="Subject" required;
            flowscale_input      style     3.value  label="Style";
            flowscale_input      negative  8.value  label="Negative prompt";
            flowscale_input      width     10.width  min=256 max=1024;
            flowscale_input      height    10.height min=256 max=1024;
            flowscale_input      seed      11.seed   default=random;
            flowscale_input      steps     11.steps  min=1 max=50;
            flowscale_input      cfg       11.cfg    min=1 max=20;
            flowscale_input      sampler   11.sampler_name options=euler|euler_ancestral|dpmpp_2m|ddim;
            flowscale_input      upscale   14.value  min=256 max=2048;
            flowscale_input      blur      18.blur_radius min=1 max=31;
            flowscale_input      blend     19.blend_factor min=0 max=1;
            flowscale_input      tint_mode 22.blend_mode options=normal|multiply|screen|overlay|soft_light|difference;
            flowscale_input      thumb     26.value  min=32 max=512;
            flowscale_output     base      13 label="Base image";
            flowscale_output     graded    20 label="Graded";
            flowscale_output     poster    25 label="Poster";
            flowscale_output     thumbnail 30 label="Thumbnail";
            flowscale_backend    comfyui;
            flowscale_backend_depth $depth;
            flowscale_queue_size 1000000;
        }

        # the baseline: plain nginx proxying the same body to a stub
        location = /proxy {
            proxy_pass http://stub/runs;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        # the baseline of GET L: the descriptor's bytes from the config
        location = /static {
            default_type application/json;
            include static.conf;
        }
    }

    server {
        listen 127.0.0.1:$stub;

        location / {
            default_type application/json;
            include stub.conf;
        }
    }
}
EOF

"$nginx" -p "$work/nginx" -c conf/nginx.conf -t -q ||
    die "nginx -t failed"
"$nginx" -p "$work/nginx" -c conf/nginx.conf
for _ in $(seq 50); do [ -s "$ngx_pid_file" ] && break; sleep 0.1; done
[ -s "$ngx_pid_file" ] || die "nginx did not start"
say "nginx on 127.0.0.1:$front ($workers workers, pool=$pool per worker," \
    "backend depth $depth)"

base=http://127.0.0.1:$front
body=$bench/workflows/bench30.request.json

# ------------------------------------------------- one run, the baselines

auth="Authorization: Bearer $key"

# the deployment is ready once a backend showed it has every node class
for _ in $(seq 100); do
    curl -sS "$base/v1/bench30" 2>/dev/null | grep -q '"state": *"ready"' && break
    sleep 0.1
done
status=$(curl -sS -o "$work/post.body" -D "$work/post.head" -w '%{http_code}' \
              -H "$auth" -H 'Content-Type: application/json' \
              --data-binary @"$body" \
              "$base/v1/bench30")
[ "$status" = 202 ] ||
    { cat "$work/post.body" >&2; die "POST /v1/bench30 answered $status, not 202"; }
run_id=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' \
             "$work/post.body")

status=$(curl -sS -o "$work/descriptor" -w '%{http_code}' "$base/v1/bench30")
[ "$status" = 200 ] || die "GET /v1/bench30 answered $status"

# `return` in the config answers the same bytes.  A config token is at
# most 4 KB, so a longer body is set in pieces and returned as "$a$b..."
# (`set` of a constant costs next to nothing); nginx unescapes \\ and \'.
nginx_return() {  # STATUS FILE PREFIX
    $py - "$@" <<'EOF'
import sys
status, path, prefix = sys.argv[1:4]
data = open(path, "rb").read().decode()
if "$" in data:
    sys.exit("bench: a '$' in %s cannot be put in a return" % path)
names = []
for i in range(0, max(len(data), 1), 3000):
    names.append("$%s%d" % (prefix, i // 3000))
    piece = data[i:i + 3000].replace("\\", "\\\\").replace("'", "\\'")
    print("set %s '%s';" % (names[-1], piece))
print('return %s "%s";' % (status, "".join(names)))
EOF
}
nginx_return 200 "$work/descriptor" bench_d >"$work/nginx/conf/static.conf"
nginx_return 202 "$work/post.body" bench_r >"$work/nginx/conf/stub.conf"
"$nginx" -p "$work/nginx" -c conf/nginx.conf -s reload
for _ in $(seq 50); do
    curl -sS -o "$work/static" "$base/static" &&
        cmp -s "$work/static" "$work/descriptor" && break
    sleep 0.1
done
cmp -s "$work/static" "$work/descriptor" ||
    die "the return 200 baseline does not answer the descriptor's bytes"
sleep 0.5   # old workers finish
[ "$(curl -sS -o /dev/null -w '%{http_code}' -H "$auth" \
      -H 'Content-Type: application/json' --data-binary @"$body" \
      "$base/proxy")" = 202 ] ||
    die "the proxy baseline does not answer 202"

# the row that POST L wrote, for pgbench
IFS=$'\t' read -r r_project r_deployment r_version <<<"$(psql_fs flowscale \
    "SELECT project, deployment, version FROM flowscale.runs WHERE id = '$run_id'" \
    | tr '|' '\t')"
r_inputs=$(psql_fs flowscale \
    "SELECT inputs::text FROM flowscale.runs WHERE id = '$run_id'")
r_prompt=$(psql_fs flowscale \
    "SELECT prompt::text FROM flowscale.runs WHERE id = '$run_id'")
[ -n "$r_prompt" ] || die "run $run_id is not in flowscale.runs"
nodes=$($py -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$r_prompt")

cat >"$work/accept_run.sql" <<'EOF'
SELECT run_id, created FROM flowscale.accept_run(gen_random_uuid(),
    :project, :deployment, :version, NULL, :inputs, :prompt, '[]', NULL,
    NULL, NULL, '00000000-0000-4000-8000-000000000000');
EOF

# ------------------------------------------------------------ measuring

pg_master=$(head -n 1 "$work/pg/data/postmaster.pid")

ticks_of() {  # PID...: user + system clock ticks (+ reaped children's)
    local p
    for p in "$@"; do
        cat "/proc/$p/stat" 2>/dev/null || true
    done | awk '{ t += $14 + $15 + $16 + $17 } END { print t + 0 }'
}

# CPU ticks so far: nginx workers, PostgreSQL, simulators, whole machine
cpu_snap() {
    local ngx pg
    # the masters' reaped children count too: a worker that exits (reload,
    # crash) or a backend that disconnects keeps its time in the sum
    ngx=$(cat "$ngx_pid_file")
    pg=$(ps -o pid= --ppid "$pg_master")
    echo "ngx=$(ticks_of "$ngx" $(ps -o pid= --ppid "$ngx"))" \
         "pg=$(ticks_of "$pg_master" $pg)" \
         "sim=$(ticks_of "${pids[@]}")" \
         "all=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)"
}

# cpu_mark: cpu_snap plus the CPU ticks of this shell's finished children
# (the load generator) into $mark; `times` must run in this shell itself
cpu_mark() {
    times >"$work/times"
    mark="$(cpu_snap) gen=$(sed -n 2p "$work/times" | tr 'ms' '  ' |
        awk -v hz="$(getconf CLK_TCK)" \
            '{ printf "%d", ($1 * 60 + $2 + $3 * 60 + $4) * hz }')"
}

cpu_delta() {  # NAME BEFORE AFTER: ticks spent in between, into NAME.kv
    local k
    for k in ngx pg sim gen all; do
        echo "cpu_$k=$(( $(sed -n "s/.*\b$k=\([0-9]*\).*/\1/p" <<<"$3") - \
                         $(sed -n "s/.*\b$k=\([0-9]*\).*/\1/p" <<<"$2") ))"
    done >>"$work/$1.kv"
}

# wrk_run NAME DURATION CONNS PATH BODY|- [RATE_PER_CONN]
wrk_run() {
    local name=$1 d=$2 c=$3 path=$4 b=$5 rate=${6:-} c0 c1 mark
    cpu_mark; c0=$mark
    wrk -t1 -c"$c" -d"${d}s" --timeout 10s -H "$auth" \
        -s "$bench/wrk/intake.lua" \
        "$base$path" -- "$b" $rate >"$work/$name.wrk" 2>&1 ||
        { cat "$work/$name.wrk" >&2; die "wrk $name failed"; }
    cpu_mark; c1=$mark
    grep '^WRK ' "$work/$name.wrk" | tail -n 1 | tr ' ' '\n' | grep = \
        >"$work/$name.kv"
    cpu_delta "$name" "$c0" "$c1"
}

merge() {  # NAME A B: sums of A and B; latencies are their mean
    awk -F= 'FNR == NR { a[$1] = $2; next }
             $1 ~ /_us$/ && $1 != "duration_us" { print $1 "=" int((a[$1] + $2) / 2); next }
             { print $1 "=" a[$1] + $2 }' "$work/$2.kv" "$work/$3.kv" >"$work/$1.kv"
}

kv() {  # NAME KEY
    sed -n "s/^$2=//p" "$work/$1.kv"
}

calc() { awk "BEGIN { printf \"$1\", $2 }"; }

rps() {  # NAME: completed 2xx/3xx per second
    calc %.0f "($(kv "$1" requests) - $(kv "$1" errors_status)) / ($(kv "$1" duration_us) / 1e6)"
}

ms() { calc %.2f "$(kv "$1" "$2") / 1000"; }

errors() {
    echo $(( $(kv "$1" errors_status) + $(kv "$1" errors_connect) + \
             $(kv "$1" errors_read) + $(kv "$1" errors_write) + \
             $(kv "$1" errors_timeout) ))
}

hz=$(getconf CLK_TCK)
cpu_per_req() {  # NAME: nginx workers' CPU ms per request
    calc %.3f "$(kv "$1" cpu_ngx) * 1000 / $hz / ($(kv "$1" requests) > 0 ? $(kv "$1" requests) : 1)"
}

cores() {  # NAME GROUP: CPUs busy on average during the phase
    calc %.2f "$(kv "$1" "cpu_$2") / $hz / ($(kv "$1" duration_us) / 1e6)"
}

other_cores() {  # NAME: CPUs busy with none of the above (other processes)
    calc %.2f "($(kv "$1" cpu_all) - $(kv "$1" cpu_ngx) - $(kv "$1" cpu_pg) - $(kv "$1" cpu_sim) - $(kv "$1" cpu_gen)) / $hz / ($(kv "$1" duration_us) / 1e6)"
}

runs_count() { psql_fs flowscale "SELECT count(*) FROM flowscale.runs"; }

say "warming up (2 s each)"
wrk_run warm-proxy 2 "$conns" /proxy "$body"
wrk_run warm-post 2 "$conns" /v1/bench30 "$body"
wrk_run warm-get 2 "$conns" /v1/bench30 -

say "one connection, ${secs}s/2 each: proxy_pass, POST L"
half=$(( (secs + 1) / 2 ))
wrk_run serial-proxy "$half" 1 /proxy "$body"
wrk_run serial-post "$half" 1 /v1/bench30 "$body"

say "peak, $conns connections, ${secs}s: proxy_pass"
wrk_run proxy "$secs" "$conns" /proxy "$body"

say "peak, $conns clients, ${secs}s: pgbench accept_run"
cpu_mark; c0=$mark
"$pgbin/pgbench" -n -M extended -c "$conns" -j 1 -T "$secs" \
    -f "$work/accept_run.sql" \
    -D project="$r_project" -D deployment="$r_deployment" \
    -D version="$r_version" -D inputs="$r_inputs" -D prompt="$r_prompt" \
    -h 127.0.0.1 -p "$pg_port" -U flowscale flowscale_pgbench \
    >"$work/pgbench.out" 2>&1 ||
    { cat "$work/pgbench.out" >&2; die "pgbench failed"; }
cpu_mark; c1=$mark
echo "duration_us=$((secs * 1000000))" >"$work/pgbench.kv"
cpu_delta pgbench "$c0" "$c1"
pg_tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' \
             "$work/pgbench.out")
pg_lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$work/pgbench.out")
pg_failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' \
                "$work/pgbench.out")
[ -n "$pg_tps" ] || { cat "$work/pgbench.out" >&2; die "no tps from pgbench"; }

say "peak, $conns connections, ${secs}s: POST L"
rows0=$(runs_count)
wrk_run post "$secs" "$conns" /v1/bench30 "$body"
sleep 0.5
rows1=$(runs_count)
queued=$(psql_fs flowscale \
    "SELECT count(*) FROM flowscale.runs WHERE status = 'queued'")

# what the backlog costs with no requests: backend events, the leader
say "idle with the backlog, 3 s"
cpu_mark; c0=$mark
sleep 3
cpu_mark; c1=$mark
echo "duration_us=3000000" >"$work/idle.kv"
cpu_delta idle "$c0" "$c1"

# about half of POST L's peak: each connection pauses after its response
# so that (pause + unloaded latency) x rate = connections
post_rps=$(rps post)
target=$(calc %.0f "$post_rps / 2")
pause_ms=$(calc %.3f "$conns * 1000 / $target - $(kv serial-post mean_us) / 1000")
per_conn=$(calc %.3f "1000 / ($pause_ms > 0.5 ? $pause_ms : 0.5)")
say "~half rate ($target/s offered), $conns connections, ${secs}s: POST L, proxy_pass"
wrk_run half-post "$secs" "$conns" /v1/bench30 "$body" "$per_conn"
wrk_run half-proxy "$secs" "$conns" /proxy "$body" "$per_conn"

say "cached path, $conns connections, ${secs}s/2 each: GET L, return 200"
# alternated, so drifting load elsewhere on the machine hits both alike
quarter=$(( (half + 1) / 2 ))
for i in 1 2; do
    wrk_run "get$i" "$quarter" "$conns" /v1/bench30 -
    wrk_run "static$i" "$quarter" "$conns" /static -
done
merge get get1 get2
merge static static1 static2

rows2=$(runs_count)
queued2=$(psql_fs flowscale \
    "SELECT count(*) FROM flowscale.runs WHERE status = 'queued'")
finished=$(psql_fs flowscale \
    "SELECT count(*) FROM flowscale.runs WHERE status IN ('succeeded', 'failed', 'canceled')")
failed_runs=$(psql_fs flowscale \
    "SELECT count(*) FROM flowscale.runs WHERE status = 'failed'")

# ------------------------------------------------------------ the table

proxy_rps=$(rps proxy)
floor=$(calc %.0f "$proxy_rps < $pg_tps ? $proxy_rps : $pg_tps")
floor_name=$(calc %s "$proxy_rps < $pg_tps ? \"proxy_pass\" : \"pgbench\"")
ratio=$(calc %.2f "$post_rps / $floor")
add_p50=$(calc %.2f "($(kv half-post p50_us) - $(kv half-proxy p50_us)) / 1000")
add_p99=$(calc %.2f "($(kv half-post p99_us) - $(kv half-proxy p99_us)) / 1000")
get_ratio=$(calc %.2f "$(rps get) / $(rps static)")
alerts=$(grep -c '\[alert\]\|\[emerg\]\|\[crit\]' "$work/nginx/logs/error.log" || true)
errs=$(grep -c '\[error\]' "$work/nginx/logs/error.log" || true)
crashes=$(grep -c 'exited on signal' "$work/nginx/logs/error.log" || true)

row() {  # LABEL NAME
    printf '%-36s %9s %8s %8s %8s %9s\n' "$1" "$(rps "$2")" \
        "$(ms "$2" p50_us)" "$(ms "$2" p99_us)" "$(errors "$2")" \
        "$(cpu_per_req "$2")"
}

echo
echo "FlowScale run intake, loopback, $(nproc) CPUs, nginx $workers workers," \
     "wrk 1 thread, $conns connections, ${secs} s per phase"
echo "POST L: bench30 ($nodes nodes, $(wc -c <"$body") byte JSON body)," \
     "pool=$pool per worker, backend depth $depth x 2 simulators"
echo
printf '%-36s %9s %8s %8s %8s %9s\n' "" "req/s" "p50 ms" "p99 ms" "errors" "cpu ms/req"
row "proxy_pass -> stub, 1 connection" serial-proxy
row "POST L, 1 connection" serial-post
row "proxy_pass -> stub (peak)" proxy
printf '%-36s %9.0f %8s %8s %8s %9s\n' "pgbench accept_run, $conns clients" \
    "$pg_tps" "avg $pg_lat" "" "${pg_failed:-0}" "-"
row "POST L (peak)" post
row "POST L at ~half peak" half-post
row "proxy_pass at the same pacing" half-proxy
row "GET L (descriptor)" get
row "return 200 (same bytes)" static
echo
echo "accepted runs/s (POST L peak)         $post_rps"
echo "ratio to min(proxy_pass, pgbench)     $ratio  (min is $floor_name, $floor/s; goal >= 0.7)"
echo "added latency at ~half peak           p50 +$add_p50 ms, p99 +$add_p99 ms" \
     "(POST L minus proxy_pass at $(rps half-post)/s vs $(rps half-proxy)/s; goal p99 < 2 ms)"
echo "GET L / return 200                    $get_ratio"
echo "rows committed during POST L peak     $((rows1 - rows0)) (wrk counted" \
     "$(( $(kv post requests) - $(kv post errors_status) )) 2xx)"
echo "runs at the end                       $rows2 in PostgreSQL, $queued2 queued" \
     "($queued right after the peak), $finished finished ($failed_runs failed)"
echo "nginx error log                       $alerts alert/crit/emerg, $errs error," \
     "$crashes worker crashes"
echo
echo "CPUs busy (of $(nproc))        nginx  PostgreSQL  simulators  wrk/pgbench  other processes"
for n in proxy pgbench post idle half-post; do
    printf '%-26s %7s %11s %11s %12s %16s\n' "$n" "$(cores $n ngx)" "$(cores $n pg)" \
        "$(cores $n sim)" "$(cores $n gen)" "$(other_cores $n)"
done
if [ "$alerts" != 0 ] || [ "$errs" != 0 ]; then
    echo
    echo "first distinct error log lines:"
    grep '\[alert\]\|\[emerg\]\|\[crit\]\|\[error\]' "$work/nginx/logs/error.log" \
        | sed 's/^[0-9/]* [0-9:]* //; s/, client: .*//' \
        | sed 's/[0-9]*#[0-9]*: \*[0-9]* /#/' | sort | uniq -c | sort -rn | head -n 8
fi
