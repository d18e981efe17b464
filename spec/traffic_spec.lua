-- The traffic layer under ctx.http (core/src/traffic.c) against real
-- processes: the provider simulator, `junction run` processes, the ctest
-- Redis fixture (JUNCTION_TEST_REDIS_URL) and a private redis-server that is
-- killed and restarted.
--
--   * two runtime processes sharing one Redis bucket never exceed the limit
--     over a sustained run, checked on every sliding window of what the
--     simulator received (and the same load without Redis does exceed it);
--   * the provider's signals: a 429's Retry-After and a spent budget's
--     x-ratelimit-reset are waited out before the retry arrives, 5xx bursts
--     and hangs are retried for idempotent requests only, the breaker trips
--     and, while it is open, the simulator receives nothing but the
--     half-open probes; it closes again and work continues;
--   * Redis killed and restarted mid-run: requests keep flowing on the local
--     share and the limit holds again once Redis is back;
--   * a hanging provider next to a healthy one does not slow the healthy one;
--   * no credential (tokens, a credential sent as a query parameter, the
--     Redis password) appears in an error, a log line or the store.
--
-- Limits are checked on the simulator's arrival times (GET /_sim/arrivals),
-- never on how long something took.
local cjson = require "cjson.safe"
local T = require "junction.testing"
local simulator = require "helpers.simulator"
local runtime = require "helpers.runtime"
local redis_server = require "helpers.redis_server"
local util = require "helpers.util"

-- Canary credentials: tokens the simulator accepts, a credential sent as a
-- query parameter, a Redis password. None may ever appear in an error, a log
-- line, a job record or the store.
local CANARY_A = "ghp_CANARYTRAFFICa0123456789abcdefghijk"
local CANARY_B = "ghp_CANARYTRAFFICb0123456789abcdefghijk"
local CANARY_QUERY = "CANARYTRAFFICquery0123456789abcdef"
local CANARY_REDIS = "CANARYTRAFFICredis0123456789abcdef"
local CANARY_ADMIN = "CANARYTRAFFICadmin0123456789abcdef"

local function no_canary(text, what)
  assert.is_nil(text:find("CANARYTRAFFIC", 1, true), "a canary credential leaked into " .. what)
end

-- A connector that requests the simulator as its config says:
--   base_url, path, method, count (requests at most), timeout, idempotent,
--   start_ms (epoch ms: sleep until then), delay_s (sleep that long first),
--   until_ms (stop once past it),
--   sleep_s (pause between requests), stop_after_ok (stop after that many
--   200s in a row), windows ({ {from_ms, to_ms}, ... }: responses completed
--   in each), strict (a failed request fails the job with its error).
-- Returns { outcomes = { "200" | "circuit" | "rate" | "error", ... },
--           errors = { ... }, windows = { n, ... } }.
local function probe_source(provider, rate_limits)
  return [[
local c = connector {
  provider_type = "]] .. provider .. [[", display_name = "Traffic probe",
  description = "Requests the provider simulator as the traffic specs tell it to.",
  version = "1.0.0", auth_types = { "api_key" }, capabilities = { "evidence_collection" },
  rate_limits = ]] .. rate_limits .. [[, egress = { "api.example.invalid" },
  documentation_url = "https://example.invalid/docs",
}

function c.test_connection() return { success = true } end

function c.collect_evidence(ctx, cfg)
  local url = cfg.base_url .. (cfg.path or "/orgs/acme")
  local out = { outcomes = {}, errors = {}, windows = {} }
  local windows = cfg.windows or {}
  for w = 1, #windows do out.windows[w] = 0 end
  if cfg.start_ms then
    local wait = cfg.start_ms / 1000 - ctx.time()
    if wait > 0 then ctx.sleep(wait) end
  end
  if cfg.delay_s then ctx.sleep(cfg.delay_s) end
  local ok_run = 0
  for _ = 1, cfg.count or 1 do
    if cfg.until_ms and ctx.time() * 1000 >= cfg.until_ms then break end
    local res, err = ctx.http.request{ method = cfg.method, url = url, timeout = cfg.timeout,
                                       idempotent = cfg.idempotent }
    local now = ctx.time() * 1000
    local outcome
    if res then
      outcome = tostring(res.status)
      for w, win in ipairs(windows) do
        if now >= win[1] and now < win[2] then out.windows[w] = out.windows[w] + 1 end
      end
    else
      if cfg.strict then error(err, 0) end
      out.errors[#out.errors + 1] = err
      if err:find("circuit breaker", 1, true) then outcome = "circuit"
      elseif err:find("rate limit", 1, true) then outcome = "rate"
      else outcome = "error" end
    end
    out.outcomes[#out.outcomes + 1] = outcome
    ok_run = outcome == "200" and ok_run + 1 or 0
    if cfg.stop_after_ok and ok_run >= cfg.stop_after_ok then break end
    if cfg.sleep_s then ctx.sleep(cfg.sleep_s) end
  end
  return out
end

return c
]]
end

local dir = util.sh("mktemp -d"):gsub("%s+$", "")

-- A connector file in the spec's directory; returns its path.
local function probe_file(provider, rate_limits)
  local path = dir .. "/" .. provider .. ".lua"
  util.write_file(path, probe_source(provider, rate_limits))
  return path
end

-- A traffic file of the operator's format; returns its path.
local traffic_files = 0
local function traffic_file(policy)
  traffic_files = traffic_files + 1
  local path = dir .. "/traffic-" .. traffic_files .. ".json"
  util.write_file(path, cjson.encode(policy))
  return path
end

-- The largest number of arrivals in any window [t, t + width_ms) that starts
-- at or after from_ms and ends by to_ms (a window holding the most arrivals
-- starts at one of them).
local function max_in_window(arrivals, width_ms, from_ms, to_ms)
  from_ms, to_ms = from_ms or -math.huge, to_ms or math.huge
  local best, j = 0, 1
  for i = 1, #arrivals do
    local t = arrivals[i]
    if t >= from_ms and t + width_ms <= to_ms then
      if j < i then j = i end
      while j <= #arrivals and arrivals[j] < t + width_ms do j = j + 1 end
      if j - i > best then best = j - i end
    end
  end
  return best
end

local function count_between(arrivals, from_ms, to_ms)
  local n = 0
  for _, t in ipairs(arrivals) do if t >= from_ms and t < to_ms then n = n + 1 end end
  return n
end

-- A request that waited on a dead or hung Redis would stall for its whole
-- deadline (tens of seconds); on the local share requests leave every 400 ms.
-- Any gap shorter than this bound shows no stall, with room for a loaded
-- machine's scheduling delays.
local STALL_MS = 3000

-- The longest gap between two consecutive arrivals in [from_ms, to_ms).
local function max_gap(arrivals, from_ms, to_ms)
  local gap, prev = 0, nil
  for _, t in ipairs(arrivals) do
    if t >= from_ms and t < to_ms then
      if prev and t - prev > gap then gap = t - prev end
      prev = t
    end
  end
  return gap
end

local function sleep_s(s) os.execute("sleep " .. s) end

-- The first log line of a `junction run` whose message starts with `msg`.
-- What a runtime says about its rate limiters: the /metrics samples
-- (name{labels} -> value) and, unless `no_health` (the cluster's store is
-- Redis: while it is down the health API answers 503), /v1/health's
-- rate_limits object.
local function limiter_state(rt, no_health)
  local s, text = util.http_get(rt.port, "/metrics")
  assert.are.equal(200, s, text)
  local metrics = {}
  for name, value in text:gmatch("\n(junction_traffic_[%w_]+[^ \n]*) ([%d.]+)") do
    metrics[name] = tonumber(value)
  end
  if no_health then return metrics end
  local hs, body = util.http_get(rt.port, "/v1/health", CANARY_ADMIN)
  assert.are.equal(200, hs, body)
  return metrics, cjson.decode(body).rate_limits
end

local function find_log(rt, msg)
  for _, l in ipairs(rt:log_lines()) do
    if type(l.msg) == "string" and l.msg:sub(1, #msg) == msg then return l end
  end
end

describe("traffic", function()
  local sim

  setup(function()
    sim = simulator.start{ members = 30, repos = 10,
                           tokens = { "sim-token", CANARY_A, CANARY_B },
                           args = { "--rate-limit", "100000000" } }
  end)

  teardown(function()
    sim:stop()
    os.execute("rm -rf " .. util.shell_quote(dir))
  end)

  before_each(function()
    sim:reset()
  end)

  ---------------------------------------------------------------------------
  -- One runtime (junction.testing.run), a probe connector and the provider's
  -- signals, armed in the simulator before the job runs.
  describe("under the provider's signals", function()
    local PROBE = probe_file("probe", "{ requests_per_second = 1000 }")
    -- Retries quick, the breaker out of the way.
    local RETRYING = traffic_file({ providers = { probe = {
      retry = { max_attempts = 4, base_delay_ms = 50, max_delay_ms = 200 },
      breaker = { consecutive_failures = 1000, min_requests = 1000000 },
    } } })
    -- No retries; the breaker trips after 3 failures in a row, opens for
    -- 500 ms (doubling), one probe at a time, closes after 2 successes.
    local TRIPPING = traffic_file({ providers = { probe = {
      retry = { max_attempts = 1 },
      breaker = { consecutive_failures = 3, min_requests = 1000000, open_ms = 500,
                  open_max_ms = 8000, half_open_probes = 1, half_open_successes = 2 },
    } } })

    -- One job (or a list of configs: one job each, concurrently). Returns
    -- the result(s) and the logs, after checking that no canary leaked.
    -- opts: job options (false removes a default); a `file` in a config
    -- picks another connector for that job.
    local function run(cfgs, policy, opts)
      local list = cfgs[1] ~= nil
      local jobs = {}
      for i, cfg in ipairs(list and cfgs or { cfgs }) do
        cfg.base_url = sim:url()
        local o = { file = cfg.file or PROBE, entry = "collect_evidence", args = { cfg },
                    config = cfg, allow_hosts = { "127.0.0.1" }, token = CANARY_A,
                    timeout_ms = cfg.job_timeout_ms or 60000 }
        for k, v in pairs(opts or {}) do
          if v == false then o[k] = nil else o[k] = v end
        end
        jobs[i] = o
      end
      local results, logs, raw = T.run(list and jobs or jobs[1], { traffic_file = policy })
      no_canary(raw, "the log")
      no_canary(cjson.encode(results), "a job's result")
      for i, r in ipairs(list and results or { results }) do
        if not jobs[i].config.may_fail then assert.are.equal("succeeded", r.status, r.error) end
      end
      return results, logs
    end

    it("waits out a 429's Retry-After before the retry arrives", function()
      sim:fault{ path_prefix = "/orgs/acme", mode = "rate_limit_429", retry_after = 2, count = 1 }
      local r = run({ count = 1 }, RETRYING)
      assert.are.same({ "200" }, r.result.outcomes)
      local a = sim:arrivals()
      assert.are.equal(2, #a)
      assert.is_true(a[2] - a[1] >= 2000, "the retry came " .. (a[2] - a[1]) .. " ms after the 429")
    end)

    it("waits for the reset of a spent budget (403, x-ratelimit-remaining: 0), then retries",
    function()
      local budget = sim:rate_limit{ token = CANARY_A, remaining = 0, reset_in_seconds = 2 }
      local reset_ms = budget[CANARY_A].reset * 1000
      local r = run({ count = 2 }, RETRYING)
      -- the refused request was retried once the budget was back, and the
      -- next request waited as well: nothing arrived in between
      assert.are.same({ "200", "200" }, r.result.outcomes)
      assert.are.same({ ["403"] = 1, ["200"] = 2 }, sim:stats().by_status)
      local a = sim:arrivals()
      assert.are.equal(3, #a)
      assert.is_true(a[1] < reset_ms)
      -- (20 ms: the simulator's arrival clock and Date.now() may differ by a few ms)
      assert.is_true(a[2] >= reset_ms - 20, "a request arrived " .. (reset_ms - a[2]) ..
        " ms before the reset")
    end)

    it("retries 5xx bursts and hangs of idempotent requests, and not a POST", function()
      sim:fault{ path_prefix = "/orgs/acme", mode = "server_error", count = 2 }
      assert.are.same({ "200" }, run({ count = 1 }, RETRYING).result.outcomes)
      assert.are.equal(3, #sim:arrivals())

      sim:reset()
      sim:fault{ path_prefix = "/orgs/acme", mode = "hang", count = 1 }
      assert.are.same({ "200" }, run({ count = 1, timeout = 1 }, RETRYING).result.outcomes)
      assert.are.equal(2, #sim:arrivals())

      -- a POST may have been applied: its 502 is returned as it is
      sim:reset()
      sim:fault{ path_prefix = "/orgs/acme", mode = "server_error", count = 1 }
      assert.are.same({ "502" }, run({ count = 1, method = "POST" }, RETRYING).result.outcomes)
      assert.are.equal(1, #sim:arrivals())

      -- unless the connector marks it idempotent (the simulator answers a
      -- POST with 404 once the fault is spent)
      sim:reset()
      sim:fault{ path_prefix = "/orgs/acme", mode = "server_error", count = 1 }
      local r = run({ count = 1, method = "POST", idempotent = true }, RETRYING)
      assert.are.same({ "404" }, r.result.outcomes)
      assert.are.equal(2, #sim:arrivals())
    end)

    it("trips the breaker; while it is open only the half-open probes arrive; it closes and " ..
       "work continues", function()
      sim:fault{ path_prefix = "/orgs/acme", mode = "server_error", count = 5 }
      local r = run({ count = 1000, sleep_s = 0.02, stop_after_ok = 5 }, TRIPPING).result
      -- runs of rejections collapsed: three failures trip it; two probes
      -- fail (it opens again, for 1 s, then 2 s); the third probe and the
      -- next request succeed and close it
      local seq = {}
      for _, o in ipairs(r.outcomes) do
        if o ~= "circuit" or seq[#seq] ~= "C" then seq[#seq + 1] = o == "circuit" and "C" or o end
      end
      assert.are.equal("502 502 502 C 502 C 502 C 200 200 200 200 200", table.concat(seq, " "))
      for _, e in ipairs(r.errors) do
        assert.matches("provider 'probe' (organization 'local'): circuit breaker open after " ..
          "repeated failures", e, 1, true)
        assert.matches("^GET http://127%.0%.0%.1:%d+/orgs/acme: ", e)
      end
      -- Only what the connector saw answered left: the rejections never did,
      -- and each probe came after the whole open time.
      local a = sim:arrivals()
      assert.are.equal(10, #a)
      assert.is_true(a[4] - a[3] >= 500, "a probe came " .. (a[4] - a[3]) .. " ms after the trip")
      assert.is_true(a[5] - a[4] >= 1000, "a probe came " .. (a[5] - a[4]) .. " ms after the last")
      assert.is_true(a[6] - a[5] >= 2000, "a probe came " .. (a[6] - a[5]) .. " ms after the last")
    end)

    it("lets a bounded number of probes through while half-open, for concurrent jobs", function()
      -- One job trips the breaker; five more start half a second after it
      -- (their own start: the same for all), while it is open. The first two
      -- probes hang (1 s timeout) and fail; it opens for 2 s; the next probes
      -- succeed and close it.
      local policy = traffic_file({ providers = { probe = {
        retry = { max_attempts = 1 },
        breaker = { consecutive_failures = 3, min_requests = 1000000, open_ms = 1000,
                    open_max_ms = 8000, half_open_probes = 2, half_open_successes = 2 },
      } } })
      sim:fault{ path_prefix = "/orgs/acme", mode = "server_error", count = 3 }
      sim:fault{ path_prefix = "/orgs/acme", mode = "hang", count = 2 }
      local cfgs = {}
      for i = 1, 6 do
        cfgs[i] = { count = 2000, sleep_s = 0.02, stop_after_ok = 3, timeout = 1,
                    delay_s = i == 1 and 0 or 0.5 }
      end
      local results = run(cfgs, policy)
      local answered, timeouts, open, half_open = 0, 0, 0, 0
      for _, r in ipairs(results) do
        assert.are.same({ "200", "200", "200" }, { unpack(r.result.outcomes, #r.result.outcomes - 2) })
        for _, o in ipairs(r.result.outcomes) do
          if o ~= "circuit" and o ~= "error" then answered = answered + 1 end
        end
        for _, e in ipairs(r.result.errors) do
          if e:find("timeout after", 1, true) then timeouts = timeouts + 1
          elseif e:find("circuit breaker open", 1, true) then open = open + 1
          elseif e:find("circuit breaker half-open", 1, true) then half_open = half_open + 1
          else error("unexpected error: " .. e) end
        end
      end
      assert.are.equal(2, timeouts)
      assert.is_true(open > 0 and half_open > 0, "open " .. open .. ", half-open " .. half_open)
      local a = sim:arrivals()
      assert.are.equal(answered + timeouts, #a, "a rejected request reached the simulator")
      table.sort(a)
      -- three failures; the two probes after the open time, together; the
      -- next one after the probes' timeout and twice the open time
      assert.is_true(a[4] - a[3] >= 1000 and a[5] - a[3] >= 1000)
      assert.is_true(a[6] - a[5] >= 2000, "a request came " .. (a[6] - a[5]) ..
        " ms after the failed probes")
    end)

    it("keeps a healthy provider's throughput while another provider hangs", function()
      -- The healthy provider is paced by its limit (20 per second), so its
      -- throughput does not depend on how loaded the machine is; it is
      -- measured twice in the same process: alone, then while 40 jobs of
      -- another provider wait on requests that never get an answer.
      local HEALTHY = probe_file("healthy", "{ requests_per_second = 20, burst_size = 1 }")
      local HANGING = probe_file("hanging", "{ requests_per_second = 1000 }")
      local policy = traffic_file({ providers = { hanging = {
        max_in_flight = 8, retry = { max_attempts = 1 },
      } } })
      sim:fault{ path_prefix = "/orgs/acme/members", mode = "hang", count = -1 }
      local t0 = T.now_ms() + 1500
      local solo, beside = { t0, t0 + 4000 }, { t0 + 5000, t0 + 9000 }
      local cfgs = {}
      for i = 1, 4 do
        cfgs[i] = { file = HEALTHY, count = 100000, start_ms = t0 - 300, until_ms = beside[2],
                    windows = { solo, beside } }
      end
      -- The first 8 fill the provider's slots and hang until their jobs time
      -- out; the other 32 wait for a slot and time out before them.
      local now = T.now_ms()
      for i = 1, 40 do
        cfgs[#cfgs + 1] = { file = HANGING, path = "/orgs/acme/members", count = 1,
                            start_ms = t0 + (i <= 8 and 4200 or 4400), may_fail = true,
                            job_timeout_ms = t0 + (i <= 8 and 9600 or 9300) - now }
      end
      local results = run(cfgs, policy)
      local alone, next_to = 0, 0
      for i = 1, 4 do
        alone = alone + results[i].result.windows[1]
        next_to = next_to + results[i].result.windows[2]
      end
      assert.is_true(alone >= 60, "only " .. alone .. " requests in 4 s alone")
      assert.is_true(math.abs(next_to - alone) <= alone * 0.1, next_to ..
        " requests beside the hanging provider, " .. alone .. " alone")
      for i = 5, #results do
        assert.are.equal("failed", results[i].status)
        assert.matches("timed out", results[i].error, 1, true)
      end
      -- The hanging provider had its 8 requests in flight, no more.
      assert.are.equal(8, sim:stats().faults_injected.hang)
      sim:clear_faults()
    end)

    it("never shows a credential, sent as a query parameter, in its errors", function()
      local policy = traffic_file({ providers = { probe = {
        retry = { max_attempts = 1 },
        breaker = { consecutive_failures = 2, min_requests = 1000000, open_ms = 60000 },
      } } })
      local query = { api_key = CANARY_QUERY }
      -- the faults match only requests that carry the credential
      sim:fault{ path_prefix = "/orgs/acme", mode = "hang", count = 1, query = query }
      sim:fault{ path_prefix = "/orgs/acme", mode = "server_error", count = 1, query = query }
      local r, logs = run({ count = 4, timeout = 1 }, policy, {
        token = false,
        credential = cjson.encode({ token = CANARY_QUERY, query_param = "api_key" }),
        credential_type = "api_key",
      })
      assert.are.same({ "error", "502", "circuit", "circuit" }, r.result.outcomes)
      assert.are.equal(2, sim:stats().faults_injected.hang + sim:stats().faults_injected.server_error)
      for _, e in ipairs(r.result.errors) do
        assert.matches("^GET http://127%.0%.0%.1:%d+/orgs/acme: ", e)
      end
      assert.is_table(logs)

      -- an hourly budget of 1: the second request's wait is beyond its deadline
      sim:reset()
      local hourly = traffic_file({ providers = { probe = {
        rate_limits = { requests_per_second = 0, requests_per_hour = 1 },
      } } })
      r = run({ count = 2 }, hourly, { token = false,
        credential = cjson.encode({ token = CANARY_QUERY, query_param = "api_key" }),
        credential_type = "api_key" })
      assert.are.same({ "401", "rate" }, r.result.outcomes)
      assert.matches("^GET http://127%.0%.0%.1:%d+/orgs/acme: provider 'probe' %(organization " ..
        "'local'%): rate limit: the next token is 3600%.0 s away, beyond the request's deadline",
        r.result.errors[1])
      assert.are.equal(1, #sim:arrivals())
    end)
  end)

  ---------------------------------------------------------------------------
  -- Two `junction run` processes under a GitHub limit of 5 requests per
  -- second with a burst of 5. Both import the same six integrations, all of
  -- one organization, each collecting continuously (a run every second that
  -- keeps requesting until the process stops); each process runs three at a
  -- time (workers = github:3), so each runs three of them (with Redis they
  -- form a cluster and share the queue; without, each runs its own copy).
  describe("two runtime processes", function()
    local RATE, BURST = 5, 5
    local ORG = "traffic-" .. string.format("%.0f", T.now_ms())
    local connector = probe_source("github", "{ requests_per_second = 100 }")
    local policy = traffic_file({
      providers = { github = { rate_limits = { requests_per_second = RATE, burst_size = BURST } } },
    })

    -- Starts two processes (A with CANARY_A, B with CANARY_B, so that the
    -- simulator tells their requests apart), lets them run `seconds` (or
    -- calls between(started, runtimes)), stops them; returns the arrivals, the two runtimes
    -- (cleaned up by the caller) and when they were both ready. `conf` lines
    -- go to both.
    local function run_pair(conf, seconds, between)
      local rts = {}
      local integrations = {}
      for k = 1, 6 do
        integrations[k] = {
          id = "int-" .. k, organization_id = ORG, provider = "github",
          token_env = "SIM_TOKEN", schedule = "1s",
          config = { base_url = sim:url(), path = "/orgs/acme", count = 1000000, strict = true },
        }
      end
      for i, token in ipairs({ CANARY_A, CANARY_B }) do
        local lines = { "allow_hosts = 127.0.0.1", "traffic_file = " .. policy,
                        "workers = github:3", "log_level = debug" }
        for _, l in ipairs(conf) do lines[#lines + 1] = l end
        local rt = runtime.new{ conf = lines, env = { SIM_TOKEN = token }, connectors = {} }
        rt:connector("github.lua", connector)
        util.write_file(rt.dir .. "/integrations.json", cjson.encode(integrations))
        util.write_file(rt.dir .. "/admin", CANARY_ADMIN .. "\n")
        os.execute("chmod 600 " .. util.shell_quote(rt.dir .. "/admin"))
        util.write_file(rt.conf, util.read_file(rt.conf) .. "integrations_file = " .. rt.dir ..
          "/integrations.json\napi_admin_token_file = " .. rt.dir .. "/admin\n")
        rts[i] = rt
      end
      for _, rt in ipairs(rts) do rt:start() end
      for _, rt in ipairs(rts) do
        assert.is_table(rt:wait_log(function(l) return l.msg == "junction ready" end, 20),
          "junction run did not become ready: " .. util.read_file(rt.log))
        rt.port = tonumber(rt:wait_log(function(l) return l.msg == "api listening" end, 5).port)
      end
      local started = T.now_ms()
      -- the processes are stopped whatever `between` asserts
      local ok, err = pcall(function()
        if between then between(started, rts) else sleep_s(seconds) end
      end)
      for _, rt in ipairs(rts) do rt:stop() end
      if not ok then
        for _, rt in ipairs(rts) do rt:cleanup() end
        error(err, 0)
      end
      return sim:arrivals(), rts, started
    end

    local function cleanup(rts)
      for _, rt in ipairs(rts) do rt:cleanup() end
    end

    -- Both processes made requests (their tokens differ), and no run failed
    -- (a request that failed, rate limit included, fails its run; the runs
    -- still going at the end are interrupted by the shutdown).
    local function both_worked(rts)
      local by_token = sim:stats().by_token
      assert.is_true((by_token[CANARY_A] or 0) > 0, "process A sent nothing")
      assert.is_true((by_token[CANARY_B] or 0) > 0, "process B sent nothing")
      for _, rt in ipairs(rts) do
        for _, l in ipairs(rt:log_lines()) do
          if l.msg == "collection finished" then
            assert.is_true(l.status == "succeeded" or l.status == "cancelled",
              "a run " .. tostring(l.status) .. ": " .. tostring(l.error))
          end
        end
        no_canary(rt:all_text(), "the log or the store of junction run")
      end
    end

    -- In the cluster the processes keep jobs, job records and checkpoints in
    -- Redis: the fixture's server gets a database of this spec's own, emptied
    -- before and after.
    local function own_database(url)
      local base = url:match("^(.*)/%d+$") or url
      local db = base .. "/9"
      util.sh("redis-cli -u " .. util.shell_quote(db) .. " --no-auth-warning FLUSHDB 2>&1")
      return db
    end

    it("share one Redis bucket and never exceed the limit", function()
      local url = os.getenv("JUNCTION_TEST_REDIS_URL")
      local private
      if not url then -- outside ctest: a private server stands in for the fixture
        private = redis_server.start{ password = CANARY_REDIS }
        url = private.url
      end
      url = own_database(url)
      local SECONDS = 16
      -- cluster_nodes = 1: were Redis unreachable, each process would fall
      -- back to the whole limit and together they would exceed it.
      local arrivals, rts, started = run_pair({ "redis_url = " .. url, "cluster_nodes = 1" },
        SECONDS)
      -- The bucket was in Redis (its key expires a few seconds after the last use).
      local keys = util.sh("redis-cli -u " .. util.shell_quote(url) .. " --no-auth-warning " ..
        "--scan --pattern " .. util.shell_quote("jn:rl:{github:" .. ORG .. "}*") .. " 2>&1")
      finally(function()
        cleanup(rts)
        own_database(url)
        if private then private:stop() end
      end)
      assert.matches("jn:rl:{github:" .. ORG .. "}", keys, 1, true)
      both_worked(rts)
      for _, rt in ipairs(rts) do
        assert.is_nil(find_log(rt, "traffic: Redis unreachable"),
          "a process fell back to its local bucket")
      end
      -- Over any window of T seconds a bucket grants at most burst + rate * T
      -- (+1: the arrival times carry the network's jitter).
      local one = max_in_window(arrivals, 1000)
      local five = max_in_window(arrivals, 5000)
      assert.is_true(one <= BURST + RATE + 1, "1 s window held " .. one)
      assert.is_true(five <= BURST + RATE * 5 + 1, "5 s window held " .. five)
      -- The load really pressed on the limit: the bucket, not the demand,
      -- set the pace for most of the run.
      local sent = count_between(arrivals, started, started + SECONDS * 1000)
      assert.is_true(sent >= RATE * SECONDS * 0.6, "only " .. sent .. " requests in " ..
        SECONDS .. " s: the demand did not reach the limit")
    end)

    it("exceed the limit without Redis, each with its own bucket", function()
      local arrivals, rts = run_pair({}, 11)
      finally(function() cleanup(rts) end)
      both_worked(rts)
      -- Two local buckets let through about twice the limit: the check
      -- above is meaningful.
      local five = max_in_window(arrivals, 5000)
      assert.is_true(five > BURST + RATE * 5 + 1, "5 s window held only " .. five)
    end)

    it("keep requests flowing on the local share while Redis is down, and share the limit " ..
       "again once it is back", function()
      local redis = redis_server.start{ password = CANARY_REDIS }
      local killed_at, back_at, arrivals, rts, started
      -- one finally per test (a second one would replace the first): the
      -- pair (when run_pair returned it) and the server, whatever fails
      finally(function()
        if rts then cleanup(rts) end
        redis:stop()
      end)
      -- 5 per second shared; 2.5 per second each (burst 2.5) on the local share.
      arrivals, rts, started = run_pair({ "redis_url = " .. redis.url, "cluster_nodes = 2",
                                                "redis_timeout_ms = 100" }, nil,
                                                function(_, rts_of_pair)
        sleep_s(4)
        for _, rt in ipairs(rts_of_pair) do
          local m, rl = limiter_state(rt)
          assert.are.equal(1, m.junction_traffic_rate_limit_shared)
          assert.are.equal(0, m.junction_traffic_rate_limit_degraded)
          assert.are.same({ mode = "shared", degraded = false, degraded_since = cjson.null,
                            fallbacks = 0 }, rl)
        end
        killed_at = T.now_ms()
        redis:kill9() -- gone: connections refused
        sleep_s(4)
        -- The metrics say the limits are on the local share, and /readyz
        -- that Redis is gone (the health API needs the store, which is Redis).
        for _, rt in ipairs(rts_of_pair) do
          local m = limiter_state(rt, true)
          assert.are.equal(1, m.junction_traffic_rate_limit_degraded)
          assert.are.equal(1, m.junction_traffic_rate_limit_fallbacks_total)
          assert.are.equal(1, m['junction_traffic_degraded_lanes{provider="github"}'])
          local rs, ready = util.http_get(rt.port, "/readyz")
          assert.are.equal(503, rs, ready)
          assert.are_not.equal("ok", cjson.decode(ready).checks.redis)
        end
        redis:restart()
        back_at = T.now_ms()
        -- ... and that they are shared again, by themselves: once each
        -- process's store and limiters are back (the reconnect backs off up
        -- to 2 s; a loaded machine takes longer, so it is waited for, not
        -- timed), then requests on the shared limit for a few seconds.
        assert.is_true(runtime.wait(function()
          for _, rt in ipairs(rts_of_pair) do
            local s, text = util.http_get(rt.port, "/metrics")
            if s ~= 200 or not text:find("\njunction_traffic_rate_limit_degraded 0\n", 1, true) or
              util.http_get(rt.port, "/v1/health", CANARY_ADMIN) ~= 200 then
              return false
            end
          end
          return true
        end, 30), "the limits were not shared again within 30 s")
        sleep_s(4)
        for _, rt in ipairs(rts_of_pair) do
          local m, rl = limiter_state(rt)
          assert.are.equal(0, m.junction_traffic_rate_limit_degraded)
          assert.are.equal(0, m['junction_traffic_degraded_lanes{provider="github"}'])
          assert.are.same({ mode = "shared", degraded = false, degraded_since = cjson.null,
                            fallbacks = 1 }, rl)
        end
      end)
      both_worked(rts)
      assert.is_true(started < killed_at)
      -- No request stalled: requests kept arriving at about the limit's pace
      -- (one every 200 ms) through the outage and the recovery; a request
      -- waiting on Redis would leave a gap of its deadline.
      local gap = max_gap(arrivals, arrivals[1], math.huge)
      assert.is_true(gap < STALL_MS, "a gap of " .. gap .. " ms between two requests")
      assert.is_true(count_between(arrivals, killed_at + 500, back_at) >= 5,
        "nothing flowed while Redis was down")
      -- During the outage each process keeps to its share.
      local n = max_in_window(arrivals, 1000, killed_at + 1000, back_at)
      assert.is_true(n <= BURST + RATE + 1, "1 s window during the outage held " .. n)
      -- After the recovery (reconnect backoff up to 2 s, then the lanes try
      -- Redis again within 1 s) the shared limit holds again.
      local n1 = max_in_window(arrivals, 1000, back_at + 3000)
      local n3 = max_in_window(arrivals, 3000, back_at + 3000)
      assert.is_true(n1 <= BURST + RATE + 1, "1 s window after recovery held " .. n1)
      assert.is_true(n3 <= BURST + RATE * 3 + 1, "3 s window after recovery held " .. n3)
      -- The shared bucket is in use again: Redis holds its key.
      local keys = redis:cli("--scan", "--pattern", "jn:rl:{github:" .. ORG .. "}*")
      assert.matches("jn:rl:{github:" .. ORG .. "}", keys, 1, true)
      -- Each process said when it fell back and when it was back (and
      -- both_worked checked that the password appears nowhere).
      for _, rt in ipairs(rts) do
        local down = find_log(rt, "traffic: Redis unreachable")
        assert.is_table(down, "no log line said that the limits fell back")
        assert.are.equal("warn", down.level)
        assert.are.equal("redis 127.0.0.1:" .. redis.port, down.redis)
        assert.are.equal(2, down.share_divisor)
        local up = find_log(rt, "traffic: Redis reachable again")
        assert.is_table(up, "no log line said that the limits are shared again")
        assert.is_number(up.degraded_ms)
      end
    end)
  end)

  ---------------------------------------------------------------------------
  -- Redis that hangs (SIGSTOP: connections stay open, nothing answers),
  -- with the runtime in this process (junction.testing.run, which has no
  -- queue on Redis): the layer's own guarantee, without anything else that
  -- may wait on Redis.
  describe("one runtime", function()
    it("falls back within the Redis timeout while Redis hangs, and shares the limit again " ..
       "once it answers", function()
      local RATE, BURST = 5, 5
      local redis = redis_server.start{ password = CANARY_REDIS }
      local probe = probe_file("hung", "{ requests_per_second = 100 }")
      local policy = traffic_file({ providers = { hung = {
        rate_limits = { requests_per_second = RATE, burst_size = BURST } } } })
      local marks = dir .. "/marks"
      local t0 = T.now_ms()
      local cfgs = {}
      for i = 1, 4 do
        local cfg = { base_url = sim:url(), count = 1000000, until_ms = t0 + 11000, strict = true }
        cfgs[i] = { file = probe, entry = "collect_evidence", args = { cfg }, config = cfg,
                    allow_hosts = { "127.0.0.1" }, token = CANARY_A, timeout_ms = 60000 }
      end
      -- Redis hangs from about 3 s to 6 s into the run. The first time is
      -- written down after the STOP, the second before the CONT: the marks
      -- bracket the hang from inside, even when a loaded machine runs the
      -- signals late.
      os.execute("(sleep 3; kill -STOP " .. redis.pid .. "; date +%s%3N > " ..
        util.shell_quote(marks) .. "; sleep 3; date +%s%3N >> " .. util.shell_quote(marks) ..
        "; kill -CONT " .. redis.pid .. ") > /dev/null 2>&1 &")
      finally(function() redis:stop() end) -- (it resumes a server left paused)
      local results, logs, raw = T.run(cfgs, { traffic_file = policy, redis_url = redis.url,
                                               cluster_nodes = "2", redis_timeout_ms = "100" })
      no_canary(raw, "the log")
      for _, r in ipairs(results) do assert.are.equal("succeeded", r.status, r.error) end
      local paused_at, resumed_at = util.read_file(marks):match("^(%d+)\n(%d+)")
      paused_at, resumed_at = tonumber(paused_at), tonumber(resumed_at)
      assert.is_number(resumed_at, "Redis was not paused and resumed")
      local a = sim:arrivals()
      local gap = max_gap(a, a[1], math.huge)
      assert.is_true(gap < STALL_MS, "a gap of " .. gap .. " ms between two requests")
      -- While it hangs: the local share, 2.5 per second with a burst of 2.5.
      assert.is_true(count_between(a, paused_at + 500, resumed_at) >= 3,
        "nothing flowed while Redis hung")
      local n = max_in_window(a, 1000, paused_at + 1000, resumed_at)
      assert.is_true(n <= 2.5 + 2.5 + 1, "1 s window while Redis hung held " .. n)
      -- Once it answers again, the shared limit.
      local n1 = max_in_window(a, 1000, resumed_at + 3000)
      local n3 = max_in_window(a, 3000, resumed_at + 3000)
      assert.is_true(n1 <= BURST + RATE + 1, "1 s window after recovery held " .. n1)
      assert.is_true(n3 <= BURST + RATE * 3 + 1, "3 s window after recovery held " .. n3)
      local down, up
      for _, l in ipairs(logs) do
        if type(l) == "table" and l.msg == "traffic: Redis unreachable; rate limits fall " ..
          "back to the local share" then down = down or l end
        if type(l) == "table" and l.msg == "traffic: Redis reachable again; rate limits are " ..
          "shared" then up = l end
      end
      assert.is_table(down, "no log line said that the limits fell back")
      assert.matches("no reply within 100 ms", down.reason, 1, true)
      assert.is_table(up, "no log line said that the limits are shared again")
    end)
  end)
end)
