-- wrk script for bench/extras.sh: each request carries the next API key of
-- a file (one key a line), so that most of them miss nginx's key cache.
--
--   wrk -s keys.lua URL -- KEYS_FILE
--
-- Each thread starts at its own place in the file.  done() prints
-- "WRK requests=N duration_us=N non2xx=N" for extras.sh to parse (the route
-- answers 404 after the key check: that is expected, not an error).

local keys = {}
local i = 0

function init(args)
    for line in io.lines(args[1]) do
        keys[#keys + 1] = line
    end
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    i = math.random(#keys)
end

function request()
    i = i % #keys + 1
    return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. keys[i] })
end

function done(summary, latency, requests)
    io.write(string.format("WRK requests=%d duration_us=%d non2xx=%d errors=%d\n",
        summary.requests, summary.duration, summary.errors.status,
        summary.errors.connect + summary.errors.read + summary.errors.write
        + summary.errors.timeout))
end
