-- Junction side of the sandbox benchmark (tools/bench/sandbox).
--
--   junction script tools/bench/sandbox.lua [--rounds R] [--states S] [--sleepers N]
--
-- Prints one JSON line with:
-- - state creation: bare sandboxes (JIT off, filtered environment, memory cap,
--   no ctx) created S at a time, R rounds: median microseconds per state,
--   states per second, and the destroy cost; allocator bytes of a bare state;
-- - trivial jobs: S jobs that just return, run at once by testing.run
--   (sandbox, ctx, coroutine, result, teardown): median jobs per second;
-- - the allocator bytes of an idle job with ctx built (memory_peak of a job
--   that just returns);
-- - RSS per job: N jobs sleeping at once (ctx.sleep), (VmHWM - VmRSS before) / N,
--   measured first, while the process is fresh;
-- - CPU-bound loops (cpu_loops.lua) run as jobs: median CPU ms over R rounds,
--   as the job's own CPU accounting measures it.
local T = require "junction.testing"
local cjson = require "cjson"

local o = { rounds = 7, states = 2000, sleepers = 10000 }
local i = 1
while i <= #arg do
  local a, v = arg[i], arg[i + 1]
  local key = ({ ["--rounds"] = "rounds", ["--states"] = "states", ["--sleepers"] = "sleepers" })[a]
  if not key or not (v and v:match("^%d+$")) then
    io.stderr:write("sandbox.lua: usage: [--rounds R] [--states S] [--sleepers N]\n")
    os.exit(2)
  end
  o[key] = tonumber(v)
  i = i + 2
end

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local LOOPS = dofile(here .. "/cpu_loops.lua")

local function median(t)
  table.sort(t)
  local n = #t
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

local function round(x, digits)
  local m = 10 ^ (digits or 0)
  return math.floor(x * m + 0.5) / m
end

local out = { runtime = "junction", rounds = o.rounds, states = o.states, sleepers = o.sleepers }

-- RSS per sleeping job (first: on a fresh process nothing freed is resident yet)
do
  local specs = {}
  for j = 1, o.sleepers do
    specs[j] = { source = "local ctx = ... ctx.sleep(1) return 1", discard_items = true }
  end
  collectgarbage()
  collectgarbage()
  local before = T.rss()
  local results = T.run(specs)
  local after = T.rss()
  for j = 1, o.sleepers do
    assert(results[j].ok, results[j].error)
  end
  out.sleeping_rss_per_job_bytes = round((after.peak - before.current) / o.sleepers)
  out.sleeping_peak_rss_bytes = after.peak
  out.sleeping_baseline_rss_bytes = before.current
end

-- State creation --------------------------------------------------------------
T.sandboxes(o.states) -- warm-up: page the allocator in
local create_us, destroy_us = {}, {}
local bytes
for _ = 1, o.rounds do
  local r = T.sandboxes(o.states)
  create_us[#create_us + 1] = r.create_s / o.states * 1e6
  destroy_us[#destroy_us + 1] = r.destroy_s / o.states * 1e6
  bytes = r.bytes_per_state
end
out.state_create_us = round(median(create_us), 2)
out.states_per_s = round(1e6 / out.state_create_us)
out.state_destroy_us = round(median(destroy_us), 2)
out.bare_state_bytes = round(bytes)

-- Trivial jobs ----------------------------------------------------------------
local function trivial_specs(n)
  local specs = {}
  for j = 1, n do specs[j] = { source = "return 1", discard_items = true } end
  return specs
end
T.run(trivial_specs(o.states))
local job_rates = {}
for _ = 1, o.rounds do
  local specs = trivial_specs(o.states)
  local t0 = T.now_ms()
  local results = T.run(specs)
  local s = (T.now_ms() - t0) / 1000
  for j = 1, o.states do
    assert(results[j].ok, results[j].error)
  end
  job_rates[#job_rates + 1] = o.states / s
end
out.trivial_jobs_per_s = round(median(job_rates))

-- Idle job with ctx -----------------------------------------------------------
local idle = T.run { source = "return 1" }
assert(idle.ok, idle.error)
out.idle_job_lua_bytes = idle.memory_peak

-- CPU-bound loops in a sandbox ------------------------------------------------
local names = {}
for name in pairs(LOOPS) do names[#names + 1] = name end
table.sort(names)
out.loops_ms = {}
for _, name in ipairs(names) do
  local loop = LOOPS[name]
  local ms = {}
  for _ = 1, o.rounds do
    local r = T.run { source = loop.source, args = { loop.n }, cpu_ms = 600000, memory_mb = 1024 }
    assert(r.ok, r.error)
    ms[#ms + 1] = r.cpu_ms
  end
  out.loops_ms[name] = round(median(ms), 1)
end

print(cjson.encode(out))
