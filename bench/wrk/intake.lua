-- wrk script for bench/: one request shape per run, figures in one line.
--
--   wrk -s intake.lua URL -- [BODY_FILE|-] [RATE_PER_CONNECTION]
--
-- BODY_FILE: POST it as application/json (- or absent: GET).
-- RATE_PER_CONNECTION (requests/s): pace each connection with wrk's
-- delay() hook, a random pause of mean 1000/RATE ms (uniform on
-- [0, 2 x mean]) after each response; wrk has no -R (that is wrk2, which
-- Debian does not ship), so the offered rate is only approximately that.
--
-- done() prints "WRK key=value ..." for run-intake.sh to parse.

local pause_ms = nil

function init(args)
    local body_file, rate = args[1], tonumber(args[2] or "")

    if body_file and body_file ~= "" and body_file ~= "-" then
        local f = assert(io.open(body_file, "rb"))
        wrk.body = f:read("*a")
        f:close()
        wrk.method = "POST"
        wrk.headers["Content-Type"] = "application/json"
    end

    if rate and rate > 0 then
        pause_ms = 1000 / rate
        math.randomseed(os.time() + math.floor(os.clock() * 1e6))
        -- wrk looks for a global delay() after init(), per thread
        delay = function()
            return math.floor(math.random() * 2 * pause_ms + 0.5)
        end
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRK requests=%d duration_us=%d bytes=%d mean_us=%.1f p50_us=%d "
        .. "p90_us=%d p99_us=%d max_us=%d errors_connect=%d errors_read=%d "
        .. "errors_write=%d errors_status=%d errors_timeout=%d\n",
        summary.requests, summary.duration, summary.bytes, latency.mean,
        latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, e.connect, e.read, e.write,
        e.status, e.timeout))
end
