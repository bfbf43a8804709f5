#!/bin/bash
# Bounded chaos run (`make soak`).  Not a test: it prints figures, and exits
# non-zero if a run was lost or ran to success twice.
#
# Starts a private PostgreSQL, three simulated ComfyUI servers (step time
# 0.01 s, 64x64 images) and nginx with the module (API key off, backend
# depth 2, retries 2, health interval 500ms); submits SOAK_RUNS (1000) runs
# from SOAK_CLIENTS (8) concurrent clients while the third simulator is
# killed (SIGKILL) and started again on the same port and directory, twice;
# then waits (at most SOAK_WAIT, 180 s) until none of the accepted runs is
# queued or running, and prints: accepted, succeeded, failed (by
# error.type), lost (accepted but not final at the end, or missing from
# flowscale.runs), doubled (a run that succeeded on more than one backend
# or twice on one, from the simulators' logs), and the queue wait
# (started_at - created_at) p50/p99.  Everything it started is stopped on
# exit; SOAK_KEEP=1 keeps the work directory (logs).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module=$top/build/ngx_http_flowscale_module.so
nginx=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
py=/usr/bin/python3

runs=${SOAK_RUNS:-1000}
clients=${SOAK_CLIENTS:-8}
max_wait=${SOAK_WAIT:-180}

say() { echo "soak: $*" >&2; }
die() { echo "soak: $*" >&2; exit 1; }

[ -f "$module" ] || die "no $module (run: make build)"
pgbin=$("$top/t/bin/pg-cluster" bindir)

work=$(mktemp -d "${TMPDIR:-/tmp}/flowscale-soak.XXXXXX")
chmod 755 "$work"          # the postgres user and nginx workers look in
declare -A sim_pid=()
other_pids=()
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
            kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null || true
        fi
    fi
    for p in "${sim_pid[@]}" "${other_pids[@]}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    for p in "${sim_pid[@]}" "${other_pids[@]}"; do
        [ -n "$p" ] && wait "$p" 2>/dev/null || true
    done
    "$top/t/bin/pg-cluster" stop "$work/pg" >/dev/null 2>&1 || true
    if [ "${SOAK_KEEP:-0}" = 1 ] || [ $rc != 0 ]; then
        say "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit $rc
}
trap stop_all EXIT
trap 'exit 130' INT TERM

read -r pg_port front s1 s2 s3 <<<"$($py - <<'EOF'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)"
sims=("$s1" "$s2" "$s3")

psql_fs() {  # SQL
    "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" \
        -U flowscale -d flowscale -c "$1"
}

# ------------------------------------------------------------ fixtures

say "PostgreSQL on 127.0.0.1:$pg_port"
"$top/t/bin/pg-cluster" start "$work/pg" "$pg_port" >"$work/pg-cluster.log" 2>&1 ||
    { cat "$work/pg-cluster.log" >&2; die "PostgreSQL did not start"; }

start_sim() {  # PORT
    local p=$1 _
    mkdir -p "$work/sim-$p"
    local mark
    mark=0
    [ -f "$work/sim-$p.log" ] && mark=$(wc -c <"$work/sim-$p.log")
    "$py" "$top/t/sim/comfyui_sim.py" --port "$p" --dir "$work/sim-$p" \
        --step-time 0.01 >>"$work/sim-$p.log" 2>&1 &
    sim_pid[$p]=$!
    for _ in $(seq 100); do
        tail -c +"$((mark + 1))" "$work/sim-$p.log" | grep -q listening && return 0
        sleep 0.1
    done
    cat "$work/sim-$p.log" >&2
    die "simulator on $p did not start"
}

save_sim_log() {  # PORT: its in-memory log, kept before it dies
    curl -sS -m 10 "http://127.0.0.1:$1/sim/log" \
        >"$work/simlog-$1-$(date +%s%N).json" 2>/dev/null || true
}

for p in "${sims[@]}"; do start_sim "$p"; done
say "simulated ComfyUI on ${sims[*]} (step time 0.01 s)"

mkdir -p "$work/nginx/conf" "$work/nginx/logs"
cp "$module" "$work/nginx/ngx_http_flowscale_module.so"
cp "$top/conf/workflows/txt2img.json" "$work/nginx/conf/"

cat >"$work/nginx/conf/nginx.conf" <<EOF
load_module $work/nginx/ngx_http_flowscale_module.so;

worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;

events {
    worker_connections 4096;
}

http {
    access_log off;
    default_type application/octet-stream;

    flowscale_database "hostaddr=127.0.0.1 port=$pg_port dbname=flowscale user=flowscale" pool=4;
    flowscale_zone soak:32m;
    flowscale_health_interval 500ms;

    upstream comfyui {
        server 127.0.0.1:$s1;
        server 127.0.0.1:$s2;
        server 127.0.0.1:$s3;
    }

    server {
        listen 127.0.0.1:$front;
        flowscale_api_key off;

        location /v1/soak {
            flowscale_deployment soak;
            flowscale_workflow   txt2img.json;
            flowscale_input      prompt  6.text   required;
            flowscale_input      seed    3.seed   default=random;
            flowscale_input      steps   3.steps  min=1 max=50;
            flowscale_input      width   5.width  min=16 max=1024;
            flowscale_input      height  5.height min=16 max=1024;
            flowscale_output     result  9;
            flowscale_backend    comfyui;
            flowscale_backend_depth 2;
            flowscale_retries    2;
            flowscale_queue_size 100000;
        }
    }
}
EOF

"$nginx" -p "$work/nginx" -c conf/nginx.conf -t -q || die "nginx -t failed"
"$nginx" -p "$work/nginx" -c conf/nginx.conf
for _ in $(seq 50); do [ -s "$ngx_pid_file" ] && break; sleep 0.1; done
[ -s "$ngx_pid_file" ] || die "nginx did not start"
base=http://127.0.0.1:$front
for _ in $(seq 100); do
    curl -sS "$base/v1/soak" 2>/dev/null | grep -q '"state": *"ready"' && break
    sleep 0.1
done
curl -sS "$base/v1/soak" | grep -q '"state": *"ready"' ||
    die "the deployment did not become ready"
say "nginx on 127.0.0.1:$front (2 workers, depth 2, retries 2, health 500ms)"

# ------------------------------------------------------------ the run

# the clients: POST L from N threads; accepted ids to accepted.txt, the
# statuses of the others to refused.txt
cat >"$work/submit.py" <<'EOF'
import http.client, json, sys, threading, random
port, total, clients, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lock = threading.Lock()
next_i = [0]
ids, refused = [], []

def client():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while True:
        with lock:
            if next_i[0] >= total:
                return
            next_i[0] += 1
            i = next_i[0]
        body = json.dumps({"inputs": {"prompt": "soak %d %f" % (i, random.random()),
                                      "steps": 2, "width": 64, "height": 64}})
        try:
            conn.request("POST", "/v1/soak", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
        except Exception as ex:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                refused.append("exception %s" % type(ex).__name__)
            continue
        with lock:
            if r.status == 202:
                ids.append(json.loads(data)["id"])
            else:
                refused.append("%d %s" % (r.status, data[:200].decode("utf-8", "replace")))

ts = [threading.Thread(target=client) for _ in range(clients)]
for t in ts: t.start()
for t in ts: t.join()
open(out + "/accepted.txt", "w").write("".join(i + "\n" for i in ids))
open(out + "/refused.txt", "w").write("".join(r.replace("\n", " ") + "\n" for r in refused))
EOF

t0=$(date +%s.%N)
say "submitting $runs runs from $clients clients"
"$py" "$work/submit.py" "$front" "$runs" "$clients" "$work" &
submit_pid=$!
other_pids+=("$submit_pid")

# the chaos: kill -9 the third simulator and start it again, twice
victim=$s3
for round in 1 2; do
    sleep 3
    save_sim_log "$victim"
    kill -KILL "${sim_pid[$victim]}" 2>/dev/null || true
    wait "${sim_pid[$victim]}" 2>/dev/null || true
    say "killed the simulator on $victim (round $round, $(psql_fs \
        "SELECT count(*) FROM flowscale.runs WHERE status IN ('queued', 'running')") unfinished)"
    sleep 2
    start_sim "$victim"
    say "started it again on $victim"
done

wait "$submit_pid" || die "the clients failed"
t_submitted=$(date +%s.%N)
accepted=$(wc -l <"$work/accepted.txt")
say "$accepted accepted, $(wc -l <"$work/refused.txt") refused; waiting for them to finish"

# the accepted ids into a table, to compare with flowscale.runs
psql_fs "CREATE TABLE IF NOT EXISTS public.soak_accepted (id uuid PRIMARY KEY)" >/dev/null
"$pgbin/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U flowscale -d flowscale \
    -c "\\copy public.soak_accepted FROM '$work/accepted.txt'"

unfinished() {
    psql_fs "SELECT count(*) FROM public.soak_accepted a
             LEFT JOIN flowscale.runs r USING (id)
             WHERE r.id IS NULL OR r.status IN ('queued', 'running')"
}
deadline=$(( $(date +%s) + max_wait ))
while [ "$(unfinished)" != 0 ] && [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 1
done
t_done=$(date +%s.%N)
for p in "${sims[@]}"; do save_sim_log "$p"; done

# ------------------------------------------------------------ figures

succeeded=$(psql_fs "SELECT count(*) FROM public.soak_accepted JOIN flowscale.runs USING (id)
                     WHERE status = 'succeeded'")
failed=$(psql_fs "SELECT count(*) FROM public.soak_accepted JOIN flowscale.runs USING (id)
                  WHERE status = 'failed'")
failed_by=$(psql_fs "SELECT coalesce(error->>'type', '?') || '=' || count(*)
                     FROM public.soak_accepted JOIN flowscale.runs USING (id)
                     WHERE status = 'failed' GROUP BY error->>'type' ORDER BY 1" \
             | paste -sd ' ')
canceled=$(psql_fs "SELECT count(*) FROM public.soak_accepted JOIN flowscale.runs USING (id)
                    WHERE status = 'canceled'")
missing=$(psql_fs "SELECT count(*) FROM public.soak_accepted a
                   LEFT JOIN flowscale.runs r USING (id) WHERE r.id IS NULL")
stuck=$(psql_fs "SELECT count(*) FROM public.soak_accepted JOIN flowscale.runs USING (id)
                 WHERE status IN ('queued', 'running')")
extra=$(psql_fs "SELECT count(*) FROM flowscale.runs r
                 WHERE NOT EXISTS (SELECT 1 FROM public.soak_accepted a WHERE a.id = r.id)")
lost=$((missing + stuck))
waits=$(psql_fs "SELECT round(1000 * extract(epoch FROM
                     percentile_cont(0.5) WITHIN GROUP (ORDER BY started_at - created_at)))::text
                  || ' ' || round(1000 * extract(epoch FROM
                     percentile_cont(0.99) WITHIN GROUP (ORDER BY started_at - created_at)))::text
                  || ' ' || round(1000 * extract(epoch FROM max(started_at - created_at)))::text
                 FROM public.soak_accepted JOIN flowscale.runs USING (id)
                 WHERE started_at IS NOT NULL")
read -r wait_p50 wait_p99 wait_max <<<"$waits"
by_backend=$(psql_fs "SELECT backend || '=' || count(*) FROM public.soak_accepted
                      JOIN flowscale.runs USING (id) WHERE status = 'succeeded'
                      GROUP BY backend ORDER BY 1" | paste -sd ' ')

# from the simulators' logs (kept before each kill and at the end): a run
# that ended in success more than once, and how many runs each executed
read -r doubled executions resubmitted <<<"$($py - "$work" <<'EOF'
import glob, json, sys, collections
ok = collections.defaultdict(set)     # prompt_id -> {(port, t)}
sent = collections.defaultdict(set)   # prompt_id -> {(port, t)} accepted prompts
for f in glob.glob(sys.argv[1] + "/simlog-*.json"):
    port = f.split("simlog-")[1].split("-")[0]
    try:
        events = json.load(open(f))
    except Exception:
        continue
    for e in events:
        if e.get("kind") == "run_end" and e.get("status") == "success":
            ok[e.get("prompt_id")].add((port, e.get("t")))
        if e.get("kind") == "prompt" and e.get("status") == 200:
            sent[e.get("prompt_id")].add((port, e.get("t")))
ids = set(l.strip() for l in open(sys.argv[1] + "/accepted.txt") if l.strip())
print(sum(1 for i in ids if len(ok.get(i, ())) > 1), sum(len(v) for v in ok.values()),
      sum(1 for i in ids if len(sent.get(i, ())) > 1))
EOF
)"

log=$work/nginx/logs/error.log
alerts=$(grep -c '\[alert\]\|\[emerg\]\|\[crit\]' "$log" || true)
errs=$(grep -c '\[error\]' "$log" || true)
crashes=$(grep -c 'exited on signal' "$log" || true)

secs() { awk "BEGIN { printf \"%.1f\", $2 - $1 }"; }
echo
echo "FlowScale soak: $runs runs, $clients clients, 3 simulators (step 0.01 s," \
     "64x64), depth 2, retries 2, health 500ms; simulator :$s3 killed -9 and" \
     "restarted twice"
echo "accepted                 $accepted (refused: $(wc -l <"$work/refused.txt"))"
echo "succeeded                $succeeded   ($by_backend)"
echo "failed                   $failed   ${failed_by:+($failed_by)}"
echo "canceled                 $canceled"
echo "lost                     $lost   ($missing missing from flowscale.runs," \
     "$stuck still queued/running after ${max_wait}s max)"
echo "doubled                  $doubled   (runs that ended in success more than once;" \
     "$executions successful executions logged)"
echo "resubmitted              $resubmitted   (runs a backend accepted more than once in all: retries"
echo "                         after the kills; the victim's log is read just before each kill)"
echo "rows not accepted        $extra"
echo "queue wait               p50 ${wait_p50:-?} ms, p99 ${wait_p99:-?} ms, max ${wait_max:-?} ms"
echo "time                     submitted in $(secs "$t0" "$t_submitted") s," \
     "all final after $(secs "$t0" "$t_done") s"
echo "nginx error log          $alerts alert/crit/emerg, $errs error, $crashes worker crashes"
if [ -s "$work/refused.txt" ]; then
    echo "refused:"; sort "$work/refused.txt" | uniq -c | sort -rn | head -n 5
fi
if [ "$alerts" != 0 ] || [ "$errs" != 0 ]; then
    echo "first distinct error log lines:"
    grep '\[alert\]\|\[emerg\]\|\[crit\]\|\[error\]' "$log" \
        | sed 's/^[0-9/]* [0-9:]* //; s/, client: .*//' \
        | sed 's/[0-9]*#[0-9]*: \*[0-9]* /#/' | sort | uniq -c | sort -rn | head -n 8
fi
if [ "$stuck" != 0 ]; then
    echo "stuck runs:"
    psql_fs "SELECT id, status, backend, created_at, started_at FROM flowscale.runs
             JOIN public.soak_accepted USING (id)
             WHERE status IN ('queued', 'running') ORDER BY created_at LIMIT 10"
fi
[ "$lost" = 0 ] && [ "$doubled" = 0 ] && [ "$accepted" = "$runs" ]
