#!/bin/bash
# `make run`: PostgreSQL, two simulated ComfyUI backends (or the real ones
# in COMFYUI=http://gpu1:8188,http://gpu2:8188) and nginx with conf/ on
# port 8080.  Ctrl-C stops everything it started.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
run=$top/run
port=${PORT:-8080}
pg_port=${PG_PORT:-55432}
module=$top/build/ngx_http_flowscale_module.so
pids=()

stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping..."
    [ -f "$run/nginx/logs/nginx.pid" ] \
        && kill -QUIT "$(cat "$run/nginx/logs/nginx.pid")" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    "$top/t/bin/pg-cluster" stop "$run/pg" >/dev/null 2>&1 || true
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

mkdir -p "$run/nginx/logs" "$run/nginx/conf"

echo "== PostgreSQL on 127.0.0.1:$pg_port"
"$top/t/bin/pg-cluster" start "$run/pg" "$pg_port"

psql_demo() {
    psql -X -q -t -A -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" \
         -U flowscale flowscale -c "$1"
}

psql_demo "SELECT flowscale.create_project('demo')" >/dev/null
key=$(psql_demo "SELECT flowscale.create_api_key('demo', 'make run')")

backends=()
if [ -n "${COMFYUI:-}" ]; then
    IFS=, read -ra urls <<< "$COMFYUI"
    for u in "${urls[@]}"; do
        backends+=("${u#http://}")
    done
else
    for p in 8188 8189; do
        mkdir -p "$run/sim-$p"
        /usr/bin/python3 "$top/t/sim/comfyui_sim.py" --port "$p" \
            --dir "$run/sim-$p" --step-time 0.2 > "$run/sim-$p.log" 2>&1 &
        pids+=($!)
        for _ in $(seq 50); do
            grep -q "listening" "$run/sim-$p.log" 2>/dev/null && break
            sleep 0.1
        done
        grep -q "listening" "$run/sim-$p.log" \
            || { echo "simulator on $p did not start:"; cat "$run/sim-$p.log"; exit 1; }
        backends+=("127.0.0.1:$p")
        echo "== simulated ComfyUI on http://127.0.0.1:$p"
    done
fi

servers=""
for b in "${backends[@]}"; do servers+="        server ${b%/};\n"; done

# the demo configuration, pointed at what this script started
rm -rf "$run/nginx/conf/workflows"
cp -r "$top/conf/workflows" "$run/nginx/conf/workflows"
sed -e "s|^load_module .*|load_module $module;|" \
    -e "s|port=5432 |port=$pg_port |" \
    -e "s|listen 8080;|listen $port;|" \
    -e "s|assets=swagger-ui;|assets=$top/build/npm/node_modules/swagger-ui-dist;|" \
    -e "/^        server 127.0.0.1:818[89];/d" \
    -e "s|^    upstream comfyui {|&\n$servers|" \
    "$top/conf/nginx.conf" > "$run/nginx/conf/nginx.conf"

/usr/sbin/nginx -p "$run/nginx" -c conf/nginx.conf -t -q
/usr/sbin/nginx -p "$run/nginx" -c conf/nginx.conf -g "daemon off;" &
pids+=($!)
sleep 0.5

cat <<MSG

FlowScale is up on http://localhost:$port

  Demo project "demo", API key (shown once, only its hash is stored):
      $key

  Deployments (GET describes the inputs, outputs and version):
      curl http://localhost:$port/v1/txt2img
      curl http://localhost:$port/v1/invert
      curl http://localhost:$port/v1/caption

  Run the text-to-image demo and wait for its result:
      curl -X POST http://localhost:$port/v1/txt2img \\
           -H 'Authorization: Bearer $key' \\
           -H 'Content-Type: application/json' -H 'Prefer: wait=30' \\
           -d '{"inputs": {"prompt": "a red fox"}}'

  Then: GET the run's outputs[...].url (with the same key) for the PNG, or
  GET /v1/txt2img/runs/ID/events for live progress.

  API docs (Swagger UI; "Authorize" with the key above, then "Try it out"):
      http://localhost:$port/docs/          (document: /openapi.json)

  The shareable app pages (public: no key needed):
      http://localhost:$port/v1/txt2img/app/
      http://localhost:$port/v1/invert/app/

  Monitoring (from this machine):
      curl http://localhost:$port/metrics
      curl http://localhost:$port/flowscale/status

  Logs: $run/nginx/logs/error.log   Ctrl-C stops everything.
MSG

wait "${pids[-1]}"
