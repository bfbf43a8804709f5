#!/usr/bin/python3
"""GET /metrics and /flowscale/status N times each (bench/extras.sh).

    render_times.py BASE_URL N

Prints "metrics_p50_ms=.. metrics_p99_ms=.. status_p50_ms=.. status_p99_ms=..
metrics_bytes=.. status_bytes=.." from flowscale_metrics_render_seconds (the
gauge on the metrics page) and render_seconds (the status JSON).
"""
import json
import re
import sys
import urllib.request

base, n = sys.argv[1], int(sys.argv[2])
gauge = re.compile(rb"^flowscale_metrics_render_seconds(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.M)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


m, s = [], []
for _ in range(n):
    body = urllib.request.urlopen(base + "/metrics").read()
    m.append(float(gauge.search(body).group(1)))
    mb = len(body)
    body = urllib.request.urlopen(base + "/flowscale/status").read()
    s.append(float(json.loads(body)["render_seconds"]))
    sb = len(body)
print("metrics_p50_ms=%.3f metrics_p99_ms=%.3f status_p50_ms=%.3f "
      "status_p99_ms=%.3f metrics_bytes=%d status_bytes=%d"
      % (pct(m, 50), pct(m, 99), pct(s, 50), pct(s, 99), mb, sb))
