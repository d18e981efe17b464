-- Jobs end to end through the binary: the job records `junction run` keeps
-- (change detection, partial failures, retries and the dead letters,
-- cancellation), a worker killed with SIGKILL in the middle of a collection
-- (the job is taken over after its lease and completed, evidence neither lost
-- nor duplicated), and per-provider worker pools (a provider whose every call
-- hangs does not hold up another provider). ctest sets JUNCTION_BIN.
local cjson = require "cjson.safe"
local simulator = require "helpers.simulator"
local runtime = require "helpers.runtime"
local util = require "helpers.util"

local CANARY = "ghp_CANARYJOBS00123456789abcdefghijklmnop" -- a token the simulator accepts

local function no_canary(text)
  assert.is_nil(text:find("CANARYJOBS", 1, true), "the canary token leaked")
end

-- A connector without HTTP whose behaviour the test steers through its config.
local function test_connector(provider, body)
  return util.test_connector(provider, body, { requests_per_second = 1 })
end

-- Run 1 emits a, b, c; every later run a (unchanged), b (changed) and d.
local CHANGING = test_connector("changing", [[
  local cp = ctx.checkpoint.get() or { run = 0 }
  local run = cp.run + 1
  local function emit(id, v) ctx.emit{ resource_type = "test.item", resource_id = id, data = { v = v } } end
  if run == 1 then emit("a", 1); emit("b", 1); emit("c", 1)
  else emit("a", 1); emit("b", 2); emit("d", 1) end
  ctx.checkpoint.set{ run = run }
]])

-- Emits config.fail_after items, then fails as a provider outage would.
local FLAKY = test_connector("flaky", [[
  for i = 1, config.fail_after do
    ctx.emit{ resource_type = "test.item", resource_id = "item-" .. i, data = { i = i } }
  end
  error("the provider went away after " .. config.fail_after .. " items", 0)
]])

-- Emits one item, then waits (yielding) for a long time.
local SLEEPY = test_connector("sleepy", [[
  ctx.emit{ resource_type = "test.item", resource_id = "first", data = {} }
  for _ = 1, 60 do ctx.sleep(1) end
]])

describe("job records", function()
  local rt

  setup(function()
    rt = runtime.new{ connectors = {}, conf = { "queue_max_attempts = 2",
                                               "queue_retry_base_s = 1" } }
    rt:connector("changing.lua", CHANGING)
    rt:connector("flaky.lua", FLAKY)
    rt:connector("sleepy.lua", SLEEPY)
    rt:start()
    assert.is_table(rt:wait_log(function(l) return l.msg == "junction ready" end, 10))
  end)

  teardown(function()
    rt:stop()
    rt:cleanup()
  end)

  local function add(id, provider, config)
    local code, _, err = rt:cli("integrations", "add", id, "--org", "org-" .. id, "--provider",
      provider, "--config", cjson.encode(config or {}), "--schedule", "366d")
    assert.are.equal(0, code, err)
  end

  local function finished(pred)
    return rt:wait_job(function(j)
      return j.status ~= "queued" and j.status ~= "running" and pred(j)
    end, 30)
  end

  it("records what each run added, changed and removed", function()
    add("chg-1", "changing")
    local first = finished(function(j) return j.integration_id == "chg-1" end)
    assert.is_table(first, util.read_file(rt.log))
    assert.are.equal("succeeded", first.status, first.error)
    assert.are.same({ added = 3, changed = 0, removed = 0, baseline_job_id = cjson.null },
      first.changes)
    local _, out = rt:cli("integrations", "sync", "chg-1")
    local id = out:match("queued job (%x+)")
    local second = finished(function(j) return j.id == id end)
    assert.are.equal("succeeded", second.status, second.error)
    assert.are.same({ added = 1, changed = 1, removed = 1, baseline_job_id = first.id },
      second.changes)
    local shown = rt:json("jobs", "show", id)[1]
    assert.are.equal("d", shown.changed_resources.added[1].resource_id)
    assert.are.equal("b", shown.changed_resources.changed[1].resource_id)
    assert.are.equal("c", shown.changed_resources.removed[1].resource_id)
    assert.are.equal("test.item", shown.changed_resources.removed[1].resource_type)
    local code, text = rt:cli("jobs", "show", id)
    assert.are.equal(0, code)
    assert.matches("1 added, 1 changed, 1 removed (since job " .. first.id .. ")", text, 1, true)
    assert.matches("\n  removed  test.item c\n", text, 1, true)
    assert.matches("status%s+succeeded", text)
  end)

  it("keeps what a failing run emitted, retries it, and ends it partial with the reason", function()
    add("part-1", "flaky", { fail_after = 2 })
    local job = finished(function(j) return j.integration_id == "part-1" end)
    assert.is_table(job, util.read_file(rt.log))
    assert.are.equal("partial", job.status)
    assert.are.equal(2, job.attempts)
    assert.are.equal(2, job.max_attempts)
    assert.matches("the provider went away after 2 items", job.error, 1, true)
    -- both attempts emitted the same two items under the same run id: stored once
    assert.are.equal(2, job.items)
    local _, out = rt:cli("evidence", "export", "--integration", "part-1")
    assert.are.equal(2, #util.lines(out))
    assert.are.equal(2, job.changes.added)
    -- the first attempt was logged with its retry time
    local first = rt:wait_log(function(l)
      return l.msg == "collection finished" and l.integration_id == "part-1" and l.attempt == 1
    end, 1)
    assert.are.equal("partial", first.status)
    assert.is_string(first.retry_at)
    -- after its last attempt the job is dead-lettered, kept and listed
    local dead
    for _, d in ipairs(rt:json("jobs", "list", "--dead-letter")) do
      if d.id == job.id then dead = d end
    end
    assert.is_table(dead)
    assert.are.equal("flaky", dead.provider)
    assert.matches("went away", dead.last_error, 1, true)
  end)

  it("ends a run that failed before emitting anything as failed", function()
    add("fail-1", "flaky", { fail_after = 0 })
    local job = finished(function(j) return j.integration_id == "fail-1" end)
    assert.are.equal("failed", job.status)
    assert.are.equal(0, job.items)
    assert.are.equal(2, job.attempts)
    assert.are.equal(1, #rt:json("jobs", "list", "--integration", "fail-1", "--status", "failed"))
    assert.are.equal(0, #rt:json("jobs", "list", "--integration", "fail-1", "--status",
      "succeeded"))
    local code, _, err = rt:cli("jobs", "list", "--status", "done")
    assert.are.equal(2, code)
    assert.matches("unknown status 'done'", err, 1, true)
  end)

  it("cancels a queued job at once and stops a running one at its next yield", function()
    add("sleep-1", "sleepy")
    local running = rt:wait_job(function(j)
      return j.integration_id == "sleep-1" and j.status == "running"
    end, 15)
    assert.is_table(running)
    -- a second run of the same integration waits for the first
    local _, out = rt:cli("integrations", "sync", "sleep-1")
    local queued = out:match("queued job (%x+)")
    local code, text = rt:cli("jobs", "cancel", queued)
    assert.are.equal(0, code)
    assert.matches("job " .. queued .. " cancelled", text, 1, true)
    local q = rt:json("jobs", "show", queued)[1]
    assert.are.equal("cancelled", q.status)
    assert.are.equal("cancelled by request", q.error)

    code, text = rt:cli("jobs", "cancel", running.id)
    assert.are.equal(0, code)
    assert.matches("cancellation requested", text, 1, true)
    local stopped = finished(function(j) return j.id == running.id end)
    assert.are.equal("cancelled", stopped.status)
    assert.are.equal("cancelled by request", stopped.error)
    assert.are.equal(1, stopped.items) -- what it emitted before is kept

    code, _, text = rt:cli("jobs", "cancel", running.id)
    assert.are.equal(1, code)
    assert.matches("has already finished", text, 1, true)
    code, _, text = rt:cli("jobs", "cancel", "0123456789abcdef0123456789abcdef")
    assert.are.equal(2, code)
    assert.matches("no job", text, 1, true)
  end)

  it("reports the queue's depth per provider and priority", function()
    rt:stop() -- nothing claims while the worker is down
    assert.are.equal(0, (rt:cli("integrations", "sync", "chg-1")))
    assert.are.equal(0, (rt:cli("integrations", "sync", "chg-1", "--priority", "low")))
    local rows = {}
    for _, s in ipairs(rt:json("jobs", "stats")) do rows[s.provider .. "/" .. s.priority] = s end
    assert.are.equal(1, rows["changing/high"].queued)
    assert.are.equal(1, rows["changing/low"].queued)
    assert.is_true(rows["changing/high"].oldest_age_ms >= 0)
    assert.are.equal(2, rows["flaky/normal"].dead) -- part-1 and fail-1
    local code, text = rt:cli("jobs", "stats")
    assert.are.equal(0, code)
    assert.matches("changing%s+high%s+1", text)
    -- they survive the restart and run, the high one first
    rt:start()
    local done = rt:wait_job(function(j)
      return j.integration_id == "chg-1" and j.priority == "low" and j.status == "succeeded"
    end, 30)
    assert.is_table(done)
  end)
end)

describe("a worker killed in the middle of a collection", function()
  local sim, rt
  local MEMBERS, REPOS = 300, 40
  local ITEMS = 1 + MEMBERS + REPOS

  setup(function()
    -- every answer takes 40 ms: the collection lasts seconds
    sim = simulator.start{ members = MEMBERS, repos = REPOS, tokens = { CANARY },
                           args = { "--latency-ms", "40" } }
    rt = runtime.new{ conf = { "allow_hosts = 127.0.0.1", "queue_visibility_timeout_s = 2" },
                      env = { SIM_TOKEN = CANARY } }
  end)

  teardown(function()
    rt:cleanup()
    sim:stop()
  end)

  local function stored()
    return tonumber(rt:sql("select count(*) from evidence where integration_id = 'gh-crash'"))
  end

  it("is taken over after its lease and completes without losing or duplicating evidence",
    function()
      local code, _, err = rt:cli("integrations", "add", "gh-crash", "--org", "org-c",
        "--provider", "github", "--token-env", "SIM_TOKEN", "--schedule", "366d", "--config",
        cjson.encode({ organization = "acme", base_url = sim:url() }))
      assert.are.equal(0, code, err)
      rt:start()
      -- the first batch of evidence is stored, the job still runs: kill it
      local first = runtime.wait(function()
        local n = stored()
        return n and n > 0 and n
      end, 60)
      assert.is_number(first, "no evidence was stored: " .. util.read_file(rt.log))
      local job = rt:jobs("gh-crash")[1]
      assert.are.equal("running", job.status)
      rt:kill9()
      local at_crash = stored()
      assert.is_true(at_crash > 0 and at_crash < ITEMS, "stored at the crash: " .. at_crash)
      assert.are.equal("running", rt:jobs("gh-crash")[1].status)

      -- a new process takes the job over once the dead one's lease expires
      rt:start()
      local done = rt:wait_job(function(j)
        return j.id == job.id and j.status == "succeeded"
      end, 90)
      assert.is_table(done, "not completed: " .. util.read_file(rt.log))
      assert.are.equal(2, done.attempts)
      assert.are.equal(ITEMS, done.items)
      -- one job, every item exactly once, the checkpoint committed with them
      local jobs = rt:jobs("gh-crash")
      assert.are.equal(1, #jobs, "jobs: " .. cjson.encode(jobs) .. "\n" .. util.read_file(rt.log))
      assert.are.equal(ITEMS, stored())
      assert.are.equal(tostring(ITEMS), rt:sql("select count(distinct resource_type || '/' ||" ..
        " resource_id) from evidence where integration_id = 'gh-crash'"):match("%d+"))
      assert.are.equal("1", rt:sql("select count(*) from checkpoints where integration_id =" ..
        " 'gh-crash'"):match("%d+"))
      rt:stop()
      no_canary(rt:all_text())
    end)
end)

describe("a provider whose every call hangs", function()
  local sim, rt

  setup(function()
    sim = simulator.start{ members = 20, repos = 5, orgs = { "acme", "globex" } }
    sim:fault{ path_prefix = "/orgs/acme", mode = "hang", count = -1 }
    rt = runtime.new{ conf = { "allow_hosts = 127.0.0.1", "workers = github:2",
                               "workers_default = 2" },
                      env = { SIM_TOKEN = "sim-token" } }
    -- the same connector under a second provider type: its own pool
    local src = util.read_file("connectors/github.lua")
    src = src:gsub('provider_type = "github"', 'provider_type = "github_b"', 1)
    rt:connector("github_b.lua", src)
  end)

  teardown(function()
    rt:stop()
    rt:cleanup()
    sim:stop()
  end)

  it("does not delay another provider's jobs", function()
    local function add(id, provider, org)
      local code, _, err = rt:cli("integrations", "add", id, "--org", "org-" .. id,
        "--provider", provider, "--token-env", "SIM_TOKEN", "--schedule", "366d", "--config",
        cjson.encode({ organization = org, base_url = sim:url() }))
      assert.are.equal(0, code, err)
    end
    local function github_states()
      local states = {}
      for _, j in ipairs(rt:jobs()) do
        if j.provider == "github" then states[j.status] = (states[j.status] or 0) + 1 end
      end
      return states
    end
    add("hang-1", "github", "acme")
    add("hang-2", "github", "acme")
    add("hang-3", "github", "acme")
    rt:start()
    -- github's two workers get stuck; its third job waits for one of them
    local stuck = runtime.wait(function()
      local s = github_states()
      return s.running == 2 and s.queued == 1
    end, 30)
    assert.is_true(stuck, cjson.encode(rt:jobs()))
    add("ok-1", "github_b", "globex")
    local ok = rt:wait_job(function(j)
      return j.integration_id == "ok-1" and j.status == "succeeded"
    end, 60)
    assert.is_table(ok, "the other provider's job did not finish: " .. util.read_file(rt.log))
    assert.are.same({ running = 2, queued = 1 }, github_states())
  end)
end)
