-- wrk script: replay a pool of pre-built requests (bench/prepare.py writes the pool file).
-- Usage: wrk -t N ... -s bench/pool.lua URL -- POOL_FILE cycle|once N [RULE]
--   cycle: loop over the pool forever (hook, JWKS);
--   once:  every request is used at most once (verification tokens: a retry would skip the
--          signing); when the pool runs out, requests go to a path that answers 404, so the
--          run reports errors instead of a fast but false figure.
-- RULE: every answer must carry X-Hook-Rule: RULE (the hook answers 200 even on_error, so the
-- status alone would not show a failing store or a policy that no longer matches).
-- done() prints one line "BENCH_JSON {...}" that bench/load.py parses, with non-2xx counts.

local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local function split(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    table.insert(fields, field)
  end
  return fields
end

function init(args)
  local path, mode = args[1], args[2] or "cycle"
  once = (mode == "once")
  nthreads = tonumber(args[3]) or 1
  expect_rule = args[4]
  pool = {}
  for line in io.lines(path) do
    if line ~= "" then
      local f = split(line)
      local headers = {}
      for i = 4, #f - 1, 2 do headers[f[i]] = f[i + 1] end
      local body = f[3] ~= "" and f[3] or nil
      table.insert(pool, wrk.format(f[1], f[2], headers, body))
    end
  end
  -- Threads take interleaved slices, so in "once" mode no two threads send the same request.
  index = (tid or 0) + 1
  exhausted = wrk.format("GET", "/bench-pool-exhausted")
  non2xx = 0
  used = 0
  -- The pool is read: bench/load.py starts measuring CPU from here (bench/cpu.py).
  io.stderr:write("BENCH_READY\n")
  io.stderr:flush()
end

function request()
  if index > #pool then
    if once then return exhausted end
    index = ((index - 1) % #pool) + 1
  end
  local req = pool[index]
  index = index + nthreads
  used = used + 1
  return req
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif expect_rule and (headers["x-hook-rule"] or headers["X-Hook-Rule"]) ~= expect_rule then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bad":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
