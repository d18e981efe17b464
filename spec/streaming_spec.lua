-- Streaming jobs end to end through the binary: connectors/okta.lua tails the
-- simulator's Okta System Log (GET /api/v1/logs, polling requests and their
-- next links) with stream(ctx, cursor).
--   - embedded: the stream resumes from its committed cursor after SIGKILL and
--     after SIGTERM, every event stored exactly once; a failing segment is
--     restarted with backoff; a connector that never moves its cursor is
--     stopped at the bound of held items;
--   - cluster (the redis-server of the ctest fixture, JUNCTION_TEST_REDIS_URL,
--     database 8): a worker killed with SIGKILL leaves the stream to another,
--     which resumes from the cursor in Redis, evidence.raw holding each event
--     once; with a private redis-server paused for writes, the stream stops
--     fetching (backpressure) and loses nothing.
-- ctest sets JUNCTION_BIN.
local cjson = require "cjson.safe"
local simulator = require "helpers.simulator"
local runtime = require "helpers.runtime"
local cluster = require "helpers.cluster"
local util = require "helpers.util"

local CANARY = "00CANARYstreamOKTAtoken_0123456789abcdef"

local function no_canary(text)
  assert.is_nil(text:find("CANARYstream", 1, true), "the canary token leaked")
end

local function okta_sim(args)
  return simulator.start{ tokens = { CANARY }, args = args }
end

local function append(sim, n)
  local status = sim:request("POST", "/_sim/okta/events", { count = n })
  assert.are.equal(201, status)
end

local function sim_uuids(sim)
  local _, body = sim:request("GET", "/_sim/okta/events")
  return assert(cjson.decode(body)).uuids
end

-- schedule: 366d unless given (one run, the catch-up made at once)
local function add_okta(node, id, sim, extra, schedule)
  local config = { base_url = sim:url(), since = "2000-01-01T00:00:00Z", limit = 100,
                   poll_interval_s = 0.2 }
  for k, v in pairs(extra or {}) do config[k] = v end
  local code, _, err = node:cli("integrations", "add", id, "--org", "org-okta", "--provider",
    "okta", "--token-env", "OKTA_TOKEN", "--auth-scheme", "SSWS", "--schedule", schedule or "366d",
    "--config", cjson.encode(config))
  assert.are.equal(0, code, err)
end

-- Every uuid of the simulator's log exactly once among the items.
local function assert_exactly_once(items, uuids)
  local seen = {}
  for _, id in ipairs(items) do
    assert.is_nil(seen[id], "event " .. id .. " stored twice")
    seen[id] = true
  end
  for _, u in ipairs(uuids) do assert.is_true(seen[u], "event " .. u .. " missing") end
  assert.are.equal(#uuids, #items)
end

describe("an embedded stream", function()
  local sim, rt

  setup(function()
    sim = okta_sim({ "--okta-events", "1500" })
    rt = runtime.new{ connectors = { "okta.lua" },
                      conf = { "allow_hosts = 127.0.0.1", "queue_visibility_timeout_s = 2",
                               "queue_retry_base_s = 1" },
                      env = { OKTA_TOKEN = CANARY } }
    add_okta(rt, "okta-1", sim)
  end)

  teardown(function()
    rt:stop()
    rt:cleanup()
    sim:stop()
  end)

  local function stored()
    return tonumber(rt:sql("select count(*) from evidence where integration_id = 'okta-1'"))
  end

  local function wait_stored(n, what)
    assert.is_true(runtime.wait(function() return stored() == n end, 60),
      what .. ": stored " .. tostring(stored()) .. " of " .. n .. "\n" .. util.read_file(rt.log))
  end

  it("tails the log and resumes from its cursor after SIGKILL and SIGTERM", function()
    rt:start("--roles", "scheduler,worker")
    wait_stored(1500, "the backlog")
    append(sim, 25)
    wait_stored(1525, "events appended while it runs")
    local job = rt:jobs("okta-1")[1]
    assert.are.equal("stream", job.kind)
    assert.are.equal("running", job.status)
    -- a crash: the next process takes the job over once the lease expires
    rt:kill9()
    append(sim, 40)
    rt:start("--roles", "scheduler,worker")
    wait_stored(1565, "after the crash")
    -- a clean stop gives the job back; the next start resumes it
    rt:stop()
    local released = rt:json("jobs", "show", job.id)[1]
    assert.are.equal("queued", released.status)
    assert.matches("resumes from its cursor", released.error, 1, true)
    append(sim, 10)
    rt:start("--roles", "scheduler,worker")
    wait_stored(1575, "after the restart")
    rt:stop()

    local ids = util.lines(rt:sql("select resource_id from evidence where integration_id =" ..
      " 'okta-1' order by rowid"))
    assert_exactly_once(ids, sim_uuids(sim))
    -- one job all along: taken over after the crash, resumed after the stop
    local runs = {}
    for _, l in ipairs(cluster.log_lines(rt, "stream started")) do runs[#runs + 1] = l end
    assert.are.equal(3, #runs)
    for _, l in ipairs(runs) do assert.are.equal(job.id, l.job_id) end
    -- the taken-over attempt counts, the released one does not
    assert.are.equal(job.id .. ".1.1", runs[1].run_id)
    assert.are.equal(job.id .. ".2.1", runs[2].run_id)
    -- the cursor is Okta's next link, committed with the events it covers
    local cursor = cjson.decode(rt:sql("select cursor from checkpoints where integration_id =" ..
      " 'okta-1'"))
    assert.matches("/api/v1/logs?", cursor.next, 1, true)
    assert.matches("after=", cursor.next, 1, true)
    no_canary(rt:all_text())
  end)

  it("restarts a failing segment with backoff and loses nothing", function()
    rt:start("--roles", "scheduler,worker")
    wait_stored(1575, "before the fault")
    sim:fault{ path_prefix = "/api/v1/logs", mode = "server_error", status = 500, count = -1 }
    append(sim, 30)
    local failed = rt:wait_log(function(l)
      return l.msg == "stream segment ended" and l.error and l.error:find("HTTP 500", 1, true)
    end, 30)
    assert.is_table(failed, util.read_file(rt.log))
    sim:clear_faults()
    wait_stored(1605, "after the fault cleared")
    -- the record shows the stream running, with the last failure
    local job = rt:jobs("okta-1")[1]
    assert.are.equal("running", job.status)
    rt:stop()
    local ids = util.lines(rt:sql("select resource_id from evidence where integration_id =" ..
      " 'okta-1' order by rowid"))
    assert_exactly_once(ids, sim_uuids(sim))
  end)
end)

describe("an embedded stream whose schedule fires while it runs", function()
  local sim, rt

  setup(function()
    sim = okta_sim({ "--okta-events", "50" })
    rt = runtime.new{ connectors = { "okta.lua" }, conf = { "allow_hosts = 127.0.0.1" },
                      env = { OKTA_TOKEN = CANARY } }
  end)

  teardown(function()
    rt:stop()
    rt:cleanup()
    sim:stop()
  end)

  it("absorbs slots and manual runs into the running stream instead of queueing them", function()
    add_okta(rt, "okta-s", sim, nil, "1s")
    rt:start("--roles", "scheduler,worker")
    local started = rt:wait_log(function(l) return l.msg == "stream started" end, 30)
    assert.is_table(started, util.read_file(rt.log))
    -- three slots after the stream started: each absorbed, none queued
    assert.is_true(runtime.wait(function()
      return #cluster.log_lines(rt, "slot absorbed by the running stream") >= 3
    end, 30), util.read_file(rt.log))
    for _, l in ipairs(cluster.log_lines(rt, "slot absorbed by the running stream")) do
      assert.are.equal(started.job_id, l.job_id)
      assert.are.equal("okta-s", l.integration_id)
    end
    local jobs = rt:jobs("okta-s")
    assert.are.equal(1, #jobs, cjson.encode(jobs))
    assert.are.equal(started.job_id, jobs[1].id)
    assert.are.equal("stream", jobs[1].kind)
    assert.are.equal("running", jobs[1].status)
    assert.are.equal("0", rt:sql("select count(*) from queue_jobs where state = 'queued'")
      :match("%d+"))
    -- a manual run is absorbed the same way
    local code, out, err = rt:cli("integrations", "sync", "okta-s")
    assert.are.equal(0, code, err)
    assert.matches("integration 'okta-s' is streaming (job " .. started.job_id ..
      " is running); nothing was queued", out, 1, true)
    assert.are.same({ job_id = started.job_id, integration_id = "okta-s", priority = "high",
      status = "running" }, rt:json("integrations", "sync", "okta-s")[1])
    assert.are.equal(1, #rt:jobs("okta-s"))
    -- cancelled, the stream ends; the next slot starts a new one
    code, _, err = rt:cli("jobs", "cancel", started.job_id)
    assert.are.equal(0, code, err)
    assert.is_true(runtime.wait(function()
      for _, j in ipairs(rt:jobs("okta-s")) do
        if j.id ~= started.job_id and j.status == "running" then return true end
      end
    end, 30), cjson.encode(rt:jobs("okta-s")) .. "\n" .. util.read_file(rt.log))
    no_canary(rt:all_text())
  end)
end)

describe("a stream that never moves its cursor", function()
  local rt

  setup(function()
    rt = runtime.new{ connectors = {}, conf = { "queue_retry_base_s = 1" } }
    rt:connector("nocursor.lua", [[
local c = connector {
  provider_type = "nocursor", display_name = "No cursor", description = "a test connector",
  version = "0.1.0", auth_types = { "none" }, capabilities = { "streaming" },
  rate_limits = { requests_per_second = 1 }, egress = { "example.invalid" },
  documentation_url = "https://example.invalid/docs",
}
function c.test_connection() return { success = true } end
function c.stream(ctx, cursor)
  for i = 1, 6000 do
    ctx.emit{ resource_type = "test.event", resource_id = "e" .. i, data = { i = i } }
  end
  ctx.checkpoint.set{ at = 6000 }
end
return c
]])
    local code, _, err = rt:cli("integrations", "add", "nc-1", "--org", "org-n", "--provider",
      "nocursor", "--schedule", "366d")
    assert.are.equal(0, code, err)
  end)

  teardown(function()
    rt:stop()
    rt:cleanup()
  end)

  it("is stopped at the bound of held items and stores nothing uncovered", function()
    rt:start("--roles", "scheduler,worker")
    local ended = rt:wait_log(function(l) return l.msg == "stream segment ended" end, 30)
    assert.is_table(ended, util.read_file(rt.log))
    assert.matches("5000 items were emitted since the cursor last moved", ended.error, 1, true)
    assert.are.equal("0", rt:sql("select count(*) from evidence"):match("%d+"))
  end)
end)

describe("a stream in the cluster", function()
  local redis = cluster.redis(8)
  local sim, w1, w2, admin

  setup(function()
    redis:flush()
    sim = okta_sim({ "--okta-events", "1500" })
    -- segments of 3 s: the stream is restarted from its cursor all along
    local opts = { connectors = { "okta.lua" },
                   conf = { "allow_hosts = 127.0.0.1", "queue_visibility_timeout_s = 2",
                            "queue_retry_base_s = 1", "job_timeout_s = 3" },
                   env = { OKTA_TOKEN = CANARY } }
    w1, w2, admin = cluster.node(redis, opts), cluster.node(redis, opts), cluster.node(redis, opts)
    -- integrations are the cluster's (in Redis): added once, seen by every node
    add_okta(admin, "okta-c", sim)
  end)

  teardown(function()
    for _, n in ipairs({ w1, w2, admin }) do n:stop(); n:cleanup() end
    sim:stop()
  end)

  it("moves to another worker after SIGKILL and resumes from the cursor in Redis", function()
    w1:start("--roles", "worker")
    assert.is_table(w1:wait_log(function(l) return l.msg == "junction ready" end, 15))
    local code, out, err = admin:cli("integrations", "sync", "okta-c")
    assert.are.equal(0, code, err)
    local job_id = out:match("queued job (%x+)")
    assert.is_true(runtime.wait(function() return redis:int("XLEN", "evidence.raw") == 1500 end,
      60), util.read_file(w1.log))
    w1:kill9()
    append(sim, 50)
    w2:start("--roles", "worker")
    assert.is_true(runtime.wait(function() return redis:int("XLEN", "evidence.raw") == 1550 end,
      60), util.read_file(w2.log))
    local job = admin:json("jobs", "show", job_id)[1]
    assert.are.equal("stream", job.kind)
    assert.are.equal("running", job.status)
    assert.are.equal(2, job.attempts)
    -- the cluster's queue knows the stream runs: a manual run is absorbed
    code, out, err = admin:cli("integrations", "sync", "okta-c")
    assert.are.equal(0, code, err)
    assert.matches("is streaming (job " .. job_id .. " is running); nothing was queued", out, 1,
      true)
    -- a segment that reaches job_timeout_s ends without an error and the next
    -- one goes on from the cursor
    local rotated = w2:wait_log(function(l)
      return l.msg == "stream segment ended" and l.error == nil
    end, 20)
    assert.is_table(rotated, util.read_file(w2.log))
    append(sim, 5)
    assert.is_true(runtime.wait(function() return redis:int("XLEN", "evidence.raw") == 1555 end,
      30), util.read_file(w2.log))
    w2:stop()
    code, out = admin:cli("evidence", "export", "--integration", "okta-c")
    assert.are.equal(0, code)
    local ids, runs = {}, {}
    for _, line in ipairs(util.lines(out)) do
      local item = assert(cjson.decode(line))
      ids[#ids + 1] = item.resource_id
      runs[item.run_id] = true
    end
    assert_exactly_once(ids, sim_uuids(sim))
    -- each segment has a run id of its own: the first worker's and the second's
    assert.is_true(runs[job_id .. ".1.1"])
    assert.is_true(runs[job_id .. ".2.1"])
    assert.matches("after=", redis:cmd("GET", "jn:checkpoint:okta-c"), 1, true)
    no_canary(redis:dump() .. util.read_file(w1.log) .. util.read_file(w2.log))
  end)
end)

describe("a stream whose sink is paused", function()
  local dir = util.sh("mktemp -d"):gsub("%s+$", "")
  local redis, sim, w, admin

  setup(function()
    redis = cluster.private_redis(dir)
    -- the log grows all the time: the stream never runs out of pages
    sim = okta_sim({ "--okta-events", "200", "--okta-events-per-s", "300" })
    local opts = { connectors = { "okta.lua" }, conf = { "allow_hosts = 127.0.0.1" },
                   env = { OKTA_TOKEN = CANARY } }
    w, admin = cluster.node(redis, opts), cluster.node(redis, opts)
    add_okta(admin, "okta-p", sim)
  end)

  teardown(function()
    w:stop()
    w:cleanup()
    admin:cleanup()
    sim:stop()
    redis:stop()
    os.execute("rm -rf " .. util.shell_quote(dir))
  end)

  local function polls()
    return sim:stats().by_route["GET /api/v1/logs"] or 0
  end

  it("stops fetching while its commits wait, then catches up without loss", function()
    w:start("--roles", "worker")
    assert.is_table(w:wait_log(function(l) return l.msg == "junction ready" end, 15))
    assert.are.equal(0, (admin:cli("integrations", "sync", "okta-p")))
    assert.is_true(runtime.wait(function() return (redis:int("XLEN", "evidence.raw") or 0) > 500 end,
      60), util.read_file(w.log))
    -- running freely, it polls all the time
    local p0 = polls()
    os.execute("sleep 0.8")
    assert.is_true(polls() - p0 >= 3, "polls in 0.8 s: " .. (polls() - p0))
    -- writes paused for 1.5 s: its next commit waits, and so does the stream
    assert.are.equal("OK", redis:cmd("CLIENT", "PAUSE", "1500", "WRITE"))
    os.execute("sleep 0.3")
    local p1 = polls()
    os.execute("sleep 0.8")
    local during = polls() - p1
    assert.is_true(during <= 1, "polls while the sink was paused: " .. during)
    -- after the pause it goes on
    local after = redis:int("XLEN", "evidence.raw")
    assert.is_true(runtime.wait(function() return redis:int("XLEN", "evidence.raw") > after end,
      30), util.read_file(w.log))
    w:stop()
    local uuids = sim_uuids(sim)
    local n = redis:int("XLEN", "evidence.raw")
    assert.is_true(n > 0)
    local _, out = admin:cli("evidence", "export", "--integration", "okta-p")
    local seen, count = {}, 0
    for _, line in ipairs(util.lines(out)) do
      local item = assert(cjson.decode(line))
      assert.is_nil(seen[item.resource_id], "stored twice: " .. item.resource_id)
      seen[item.resource_id] = true
      count = count + 1
    end
    assert.are.equal(n, count)
    -- what was stored is a prefix of the log: nothing skipped before the cursor
    for i = 1, count do assert.is_true(seen[uuids[i]], "missing event " .. i) end
    assert.is_true(redis:int("EXISTS", "jn:checkpoint:okta-p") == 1)
  end)
end)
