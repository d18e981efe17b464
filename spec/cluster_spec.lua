-- Cluster mode end to end: several `junction run` processes, each with its
-- own data directory, sharing the real redis-server of the ctest fixture
-- (JUNCTION_TEST_REDIS_URL, database 7, emptied before each group):
--   - two schedulers and two workers: over 1,000 scheduled runs, each slot
--     enqueued once and each run executed exactly once;
--   - a worker killed with SIGKILL in the middle of a collection: the job is
--     taken over (XAUTOCLAIM after the visibility timeout) and completed, the
--     evidence in the stream evidence.raw neither lost nor duplicated;
--   - dead letters after the last attempt, cancellation of queued and running
--     jobs from another node, `jobs list|show|stats` from any node.
-- ctest sets JUNCTION_BIN.
local cjson = require "cjson.safe"
local simulator = require "helpers.simulator"
local runtime = require "helpers.runtime"
local cluster = require "helpers.cluster"
local util = require "helpers.util"

local DB = 7
local CANARY = "ghp_CANARYCLUSTER0123456789abcdefghijklmno" -- a token the simulator accepts

local test_connector = util.test_connector

-- Logs its run and emits one item: a run that executed leaves one log line.
local TICK = test_connector("tick", [[
  ctx.log.info("tick run", { run = ctx.run_id })
  ctx.emit{ resource_type = "test.tick", resource_id = "t", data = { run = ctx.run_id } }
]])

local FLAKY = test_connector("flaky", [[
  ctx.emit{ resource_type = "test.item", resource_id = "before-the-failure", data = {} }
  error("the provider went away", 0)
]])

local SLEEPY = test_connector("sleepy", [[
  ctx.emit{ resource_type = "test.item", resource_id = "first", data = {} }
  for _ = 1, 120 do ctx.sleep(1) end
]])

local function write_integrations(dir, list)
  local path = dir .. "/integrations.json"
  util.write_file(path, cjson.encode(list))
  return path
end

-- The same integrations in a node's own store, without running it (a
-- scheduler that starts fires a new integration's first slot as a catch-up).
local function add_integrations(node, list)
  for _, it in ipairs(list) do
    local args = { "integrations", "add", it.id, "--org", it.organization_id, "--provider",
                   it.provider, "--schedule", it.schedule, "--config", cjson.encode(it.config or {}) }
    if it.token_env then args[#args + 1] = "--token-env"; args[#args + 1] = it.token_env end
    local code, _, err = node:cli((table.unpack or unpack)(args))
    assert.are.equal(0, code, err)
  end
end

local function count_by(list, key)
  local out = {}
  for _, x in ipairs(list) do out[x[key]] = (out[x[key]] or 0) + 1 end
  return out
end

describe("two schedulers and two workers sharing Redis", function()
  local redis = cluster.redis(DB)
  local dir, nodes = util.sh("mktemp -d"):gsub("%s+$", ""), {}
  local N_INTEGRATIONS, RUNS = 50, 1000

  setup(function()
    redis:flush()
    local list = {}
    for i = 1, N_INTEGRATIONS do
      list[i] = { id = string.format("tick-%02d", i), organization_id = "org-" .. (i % 5),
                  provider = "tick", interval_s = 1 }
    end
    local file = write_integrations(dir, list)
    for _, name in ipairs({ "s1", "s2", "w1", "w2" }) do
      nodes[name] = cluster.node(redis, { integrations_file = file,
                                          conf = { "queue_visibility_timeout_s = 10" } })
      nodes[name]:connector("tick.lua", TICK)
    end
  end)

  teardown(function()
    for _, n in pairs(nodes) do n:stop(); n:cleanup() end
    os.execute("rm -rf " .. util.shell_quote(dir))
  end)

  it("enqueues each slot once and runs each job exactly once", function()
    nodes.s1:start("--roles", "scheduler")
    nodes.s2:start("--roles", "scheduler")
    nodes.w1:start("--roles", "worker")
    nodes.w2:start("--roles", "worker")
    for _, n in pairs(nodes) do
      assert.is_table(n:wait_log(function(l) return l.msg == "junction ready" end, 15),
        util.read_file(n.log))
    end
    -- one item per run: wait for 1,000 runs
    local enough = runtime.wait(function()
      return (redis:int("XLEN", "evidence.raw") or 0) >= RUNS
    end, 120)
    assert.is_true(enough, "runs so far: " .. redis:cmd("XLEN", "evidence.raw"))
    nodes.s1:stop()
    nodes.s2:stop()
    -- what was enqueued runs to the end
    local drained = runtime.wait(function()
      local busy = 0
      for _, s in ipairs(nodes.s1:json("jobs", "stats")) do busy = busy + s.queued + s.running end
      return busy == 0
    end, 60)
    assert.is_true(drained, cjson.encode(nodes.s1:json("jobs", "stats")))
    nodes.w1:stop()
    nodes.w2:stop()

    -- the job records, read from a scheduler node: every worker's runs
    local jobs = nodes.s1:jobs()
    assert.is_true(#jobs >= RUNS, "jobs: " .. #jobs)
    local statuses, slots = count_by(jobs, "status"), {}
    assert.are.same({ succeeded = #jobs }, statuses)
    for _, j in ipairs(jobs) do
      assert.are.equal(1, j.attempts)
      assert.is_truthy(j.trigger == "schedule" or j.trigger == "catch-up", j.trigger)
      assert.is_string(j.slot_id)
      assert.is_nil(slots[j.slot_id], "slot " .. tostring(j.slot_id) .. " has two jobs")
      slots[j.slot_id] = true
    end
    -- each job executed exactly once, by one of the two workers
    local runs, per_worker = {}, {}
    for _, name in ipairs({ "w1", "w2" }) do
      per_worker[name] = 0
      for _, l in ipairs(cluster.log_lines(nodes[name], "tick run")) do
        runs[l.run] = (runs[l.run] or 0) + 1
        per_worker[name] = per_worker[name] + 1
      end
    end
    for _, j in ipairs(jobs) do
      assert.are.equal(1, runs[j.id], "job " .. j.id .. " ran " .. tostring(runs[j.id]) .. " times")
    end
    assert.are.equal(#jobs, per_worker.w1 + per_worker.w2)
    assert.is_true(per_worker.w1 > 0 and per_worker.w2 > 0, cjson.encode(per_worker))
    -- evidence: one item per run in evidence.raw, no id twice
    assert.are.equal(#jobs, redis:int("XLEN", "evidence.raw"))
    local code, out = nodes.s1:cli("evidence", "export")
    assert.are.equal(0, code)
    local ids = {}
    for _, line in ipairs(util.lines(out)) do
      local item = assert(cjson.decode(line))
      assert.is_nil(ids[item.id])
      ids[item.id] = true
      assert.are.equal(1, runs[item.run_id])
    end
    -- the queue is empty: every entry acknowledged and deleted
    assert.are.equal(0, redis:int("XLEN", "integrations.jobs.tick.normal"))
  end)
end)

describe("a worker killed with SIGKILL in the middle of a collection", function()
  local redis = cluster.redis(DB)
  local sim, w1, w2, cli
  local dir = util.sh("mktemp -d"):gsub("%s+$", "")
  local MEMBERS, REPOS = 300, 40
  local ITEMS = 1 + MEMBERS + REPOS

  setup(function()
    redis:flush()
    -- every answer takes 40 ms: the collection lasts seconds
    sim = simulator.start{ members = MEMBERS, repos = REPOS, tokens = { CANARY },
                           args = { "--latency-ms", "40" } }
    local list = { {
      id = "gh-crash", organization_id = "org-c", provider = "github", token_env = "SIM_TOKEN",
      schedule = "366d", config = { organization = "acme", base_url = sim:url() } } }
    local opts = { integrations_file = write_integrations(dir, list),
                   connectors = { "github.lua" },
                   conf = { "allow_hosts = 127.0.0.1", "queue_visibility_timeout_s = 2" },
                   env = { SIM_TOKEN = CANARY } }
    w1, w2 = cluster.node(redis, opts), cluster.node(redis, opts)
    opts.integrations_file = nil
    cli = cluster.node(redis, opts)
    add_integrations(cli, list)
  end)

  teardown(function()
    for _, n in ipairs({ w1, w2, cli }) do n:stop(); n:cleanup() end
    sim:stop()
    os.execute("rm -rf " .. util.shell_quote(dir))
  end)

  it("is taken over and completed; evidence.raw holds each item once", function()
    -- the workers import the integration from the file at start
    w1:start("--roles", "worker")
    assert.is_table(w1:wait_log(function(l) return l.msg == "junction ready" end, 15))
    local code, out, err = cli:cli("integrations", "sync", "gh-crash")
    assert.are.equal(0, code, err)
    local job_id = out:match("queued job (%x+)")
    -- the first batch reached evidence.raw and the job still runs: kill its worker
    local first = runtime.wait(function()
      local n = redis:int("XLEN", "evidence.raw")
      return n and n > 0 and n
    end, 60)
    assert.is_number(first, "no evidence: " .. util.read_file(w1.log))
    assert.are.equal("running", cli:json("jobs", "show", job_id)[1].status, util.read_file(w1.log))
    w1:kill9()
    local at_crash = redis:int("XLEN", "evidence.raw")
    assert.is_true(at_crash > 0 and at_crash < ITEMS, "at the crash: " .. at_crash)
    -- pending in the dead worker's name until the lease expires
    assert.are.equal("1", redis:lines("XPENDING", "integrations.jobs.github.high", "workers")[1])

    -- another worker takes it over (XAUTOCLAIM) and completes it
    w2:start("--roles", "worker")
    local done = runtime.wait(function()
      local j = cli:json("jobs", "show", job_id)[1]
      return j.status == "succeeded" and j
    end, 90)
    assert.is_table(done, "not completed: " .. util.read_file(w2.log))
    assert.are.equal(2, done.attempts)
    assert.are.equal(ITEMS, done.items)
    w2:stop()
    -- every item exactly once in evidence.raw, the cursor committed with them
    assert.are.equal(ITEMS, redis:int("XLEN", "evidence.raw"))
    code, out = cli:cli("evidence", "export", "--job", job_id)
    assert.are.equal(0, code)
    local ids, resources = {}, {}
    for _, line in ipairs(util.lines(out)) do
      local item = assert(cjson.decode(line))
      ids[item.id] = (ids[item.id] or 0) + 1
      resources[item.resource_type .. "/" .. item.resource_id] = true
      assert.are.equal(job_id, item.run_id)
    end
    local n = 0
    for _, c in pairs(ids) do assert.are.equal(1, c); n = n + 1 end
    assert.are.equal(ITEMS, n)
    local nres = 0
    for _ in pairs(resources) do nres = nres + 1 end
    assert.are.equal(ITEMS, nres)
    assert.are.equal(1, redis:int("EXISTS", "jn:checkpoint:gh-crash"))
    assert.are.equal(0, redis:int("XLEN", "integrations.jobs.github.high"))
    -- the token reached no log line, no record, no key
    for _, text in ipairs({ util.read_file(w1.log), util.read_file(w2.log), redis:dump(),
                            select(2, cli:cli("jobs", "show", job_id)) }) do
      assert.is_nil(text:find("CANARYCLUSTER", 1, true), "the canary token leaked")
    end
  end)
end)

describe("dead letters and cancellation across nodes", function()
  local redis = cluster.redis(DB)
  local dir = util.sh("mktemp -d"):gsub("%s+$", "")
  local worker, admin

  setup(function()
    redis:flush()
    local list = {
      { id = "fail-1", organization_id = "org-f", provider = "flaky", schedule = "366d" },
      { id = "sleep-1", organization_id = "org-s", provider = "sleepy", schedule = "366d" },
    }
    local conf = { "queue_max_attempts = 2", "queue_retry_base_s = 1",
                   "queue_visibility_timeout_s = 5" }
    worker = cluster.node(redis, { integrations_file = write_integrations(dir, list), conf = conf })
    admin = cluster.node(redis, { conf = conf })
    for _, n in ipairs({ worker, admin }) do
      n:connector("flaky.lua", FLAKY)
      n:connector("sleepy.lua", SLEEPY)
    end
    add_integrations(admin, list)
    worker:start("--roles", "worker")
    assert.is_table(worker:wait_log(function(l) return l.msg == "junction ready" end, 15))
  end)

  teardown(function()
    worker:stop()
    worker:cleanup()
    admin:cleanup()
    os.execute("rm -rf " .. util.shell_quote(dir))
  end)

  it("dead-letters a job after its last attempt", function()
    local _, out = admin:cli("integrations", "sync", "fail-1", "--priority", "normal")
    local id = out:match("queued job (%x+)")
    local job = runtime.wait(function()
      local j = admin:json("jobs", "show", id)[1]
      return (j.status == "failed" or j.status == "partial") and j
    end, 30)
    assert.is_table(job, util.read_file(worker.log))
    assert.are.equal("partial", job.status) -- it emitted an item before failing
    assert.are.equal(2, job.attempts)
    assert.matches("the provider went away", job.error, 1, true)
    local dead
    for _, d in ipairs(admin:json("jobs", "list", "--dead-letter")) do
      if d.id == id then dead = d end
    end
    assert.is_table(dead)
    assert.are.equal("flaky", dead.provider)
    assert.are.equal(2, dead.attempts)
    assert.matches("went away", dead.last_error, 1, true)
    assert.are.same({ integration_id = "fail-1", trigger = "manual", slot_id = cjson.null },
      dead.payload)
    assert.are.equal(1, redis:int("XLEN", "integrations.jobs.flaky.normal.dead"))
    -- stored once although both attempts emitted it
    assert.are.equal(1, redis:int("XLEN", "evidence.raw"))
    local rows = {}
    for _, s in ipairs(admin:json("jobs", "stats")) do rows[s.provider .. "/" .. s.priority] = s end
    assert.are.equal(1, rows["flaky/normal"].dead)
  end)

  it("cancels a queued job at once and stops a running one on another node", function()
    local _, out = admin:cli("integrations", "sync", "sleep-1")
    local running = out:match("queued job (%x+)")
    assert.is_table(runtime.wait(function()
      local j = admin:json("jobs", "show", running)[1]
      return j.status == "running" and j
    end, 20), util.read_file(worker.log))
    -- a second run of the integration waits for the first (its group is locked)
    _, out = admin:cli("integrations", "sync", "sleep-1")
    local queued = out:match("queued job (%x+)")
    assert.are.equal(2, redis:int("XLEN", "integrations.jobs.sleepy.high"))
    local code, text = admin:cli("jobs", "cancel", queued)
    assert.are.equal(0, code)
    assert.matches("job " .. queued .. " cancelled", text, 1, true)
    assert.are.equal("cancelled", admin:json("jobs", "show", queued)[1].status)
    -- removed from its stream: only the running job's entry is left
    assert.are.equal(1, redis:int("XLEN", "integrations.jobs.sleepy.high"))

    code, text = admin:cli("jobs", "cancel", running)
    assert.are.equal(0, code)
    assert.matches("cancellation requested", text, 1, true)
    -- flagged until its worker (which looks every second) stops it
    local shown = admin:json("jobs", "show", running)[1]
    assert.is_true(shown.cancel_requested or shown.status == "cancelled")
    local stopped = runtime.wait(function()
      local j = admin:json("jobs", "show", running)[1]
      return j.status == "cancelled" and j
    end, 20)
    assert.is_table(stopped, util.read_file(worker.log))
    assert.are.equal("cancelled by request", stopped.error)
    assert.are.equal(1, stopped.items)
    assert.are.equal(0, redis:int("XLEN", "integrations.jobs.sleepy.high"))
    code, _, text = admin:cli("jobs", "cancel", running)
    assert.are.equal(1, code)
    assert.matches("has already finished", text, 1, true)
  end)
end)
