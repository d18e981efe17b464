-- Integrations in the store, end to end through the binary: `junction
-- integrations add|list|show|disable|enable|rm|sync` with their validation,
-- and `junction run` scheduling what the store holds (integrations added
-- while it runs, manual syncs, the integrations file imported at start)
-- against the GitHub simulator. ctest sets JUNCTION_BIN.
local cjson = require "cjson.safe"
local simulator = require "helpers.simulator"
local runtime = require "helpers.runtime"
local util = require "helpers.util"

local CANARY = "ghp_CANARYSCHED0123456789abcdefghijklmnop" -- a token the simulator accepts
local MEMBERS, REPOS = 40, 15
local ITEMS = 1 + MEMBERS + REPOS

local function no_canary(text)
  assert.is_nil(text:find("CANARYSCHED", 1, true), "the canary token leaked")
end

describe("junction integrations", function()
  local sim, rt

  setup(function()
    sim = simulator.start{ members = MEMBERS, repos = REPOS, tokens = { "sim-token", CANARY } }
    rt = runtime.new{ conf = { "allow_hosts = 127.0.0.1", "run_interval_s = 3600" },
                      env = { SIM_TOKEN = CANARY } }
  end)

  teardown(function()
    rt:cleanup()
    sim:stop()
  end)

  local function config(org)
    return cjson.encode({ organization = org or "acme", base_url = sim:url() })
  end

  it("adds, lists, shows, disables, enables and removes an integration", function()
    local code, out, err = rt:cli("integrations", "add", "gh-a", "--org", "org-a",
      "--provider", "github", "--token-env", "SIM_TOKEN", "--config", config(),
      "--schedule", "*/15 * * * *", "--jitter", "2m", "--priority", "low")
    assert.are.equal(0, code, err)
    assert.matches("id%s+gh%-a", out)
    assert.matches("schedule%s+%*/15 %* %* %* %*", out)
    assert.matches("token_env%s+%$SIM_TOKEN", out)

    local list = rt:json("integrations", "list")
    assert.are.equal(1, #list)
    local it = list[1]
    assert.are.equal("gh-a", it.id)
    assert.are.equal("org-a", it.organization_id)
    assert.are.equal("github", it.provider)
    assert.are.equal("SIM_TOKEN", it.token_env)
    assert.are.equal("2m", it.jitter)
    assert.are.equal("low", it.priority)
    assert.is_true(it.enabled)
    assert.are.equal("acme", it.config.organization)
    assert.is_string(it.next_run_at)

    -- intervals are stored in their canonical spelling
    code, out, err = rt:cli("integrations", "add", "gh-b", "--org", "org-b", "--provider",
      "github", "--config", config(), "--schedule", "90m")
    assert.are.equal(0, code, err)
    assert.are.equal("1h30m", rt:json("integrations", "show", "gh-b")[1].schedule)
    code, out = rt:cli("integrations", "list")
    assert.are.equal(0, code)
    assert.matches("^ID%s+ORG%s+PROVIDER", out)
    assert.matches("\ngh%-a%s+org%-a%s+github", out)
    assert.are.equal(1, #rt:json("integrations", "list", "--org", "org-b"))

    code, out = rt:cli("integrations", "disable", "gh-b")
    assert.are.equal(0, code)
    assert.matches("integration 'gh-b' disabled", out, 1, true)
    assert.is_false(rt:json("integrations", "show", "gh-b")[1].enabled)
    assert.are.equal(cjson.null, rt:json("integrations", "show", "gh-b")[1].next_run_at)
    code = rt:cli("integrations", "sync", "gh-b")
    assert.are.equal(2, code) -- a disabled integration is not run
    code = rt:cli("integrations", "enable", "gh-b")
    assert.are.equal(0, code)
    assert.is_true(rt:json("integrations", "show", "gh-b")[1].enabled)

    code, out = rt:cli("integrations", "rm", "gh-b")
    assert.are.equal(0, code)
    assert.matches("removed", out, 1, true)
    code, out, err = rt:cli("integrations", "show", "gh-b")
    assert.are.equal(2, code)
    assert.matches("no integration 'gh-b'", err, 1, true)
  end)

  it("refuses invalid input with a precise message", function()
    local function refused(expect, ...)
      local code, out, err = rt:cli("integrations", "add", ...)
      assert.are.equal(2, code, out .. err)
      assert.matches(expect, err, 1, true)
      return err
    end
    refused("unknown provider 'gihtub' (connectors in '" .. rt.connectors .. "': github)",
      "x1", "--org", "o", "--provider", "gihtub")
    refused("invalid schedule '0 0 32 * *': field 3 (day of month) at column 5: 32 is out of " ..
      "range 1-31", "x1", "--org", "o", "--provider", "github", "--schedule", "0 0 32 * *")
    refused("field 5 (day of week) at column 13: unknown name 'fun' (sun..sat)",
      "x1", "--org", "o", "--provider", "github", "--schedule", "0 9 * * mon-fun")
    refused("'0 0 30 2 *' never runs", "x1", "--org", "o", "--provider", "github",
      "--schedule", "0 0 30 2 *")
    refused("invalid schedule '15': invalid duration '15': the number 15 has no unit",
      "x1", "--org", "o", "--provider", "github", "--schedule", "15")
    refused("the jitter (2h) must be shorter than the interval (1h)",
      "x1", "--org", "o", "--provider", "github", "--schedule", "1h", "--jitter", "2h")
    refused("--credential and --token-env exclude each other",
      "x1", "--org", "o", "--provider", "github", "--credential", "c1", "--token-env", "T")
    refused("--priority must be high, normal or low, got 'urgent'",
      "x1", "--org", "o", "--provider", "github", "--priority", "urgent")
    refused("integration id 'x y': character 2 (' ') is not allowed",
      "x y", "--org", "o", "--provider", "github")
    refused("--config must be a JSON object, got array",
      "x1", "--org", "o", "--provider", "github", "--config", "[1]")
    refused("--config is not valid JSON", "x1", "--org", "o", "--provider", "github",
      "--config", "{")
    -- a secret in the clear-text config is refused without being echoed
    local err = refused("--config member 'api_token' looks like a credential",
      "x1", "--org", "o", "--provider", "github", "--config",
      cjson.encode({ api_token = CANARY }))
    no_canary(err)
    refused("integration 'gh-a' exists already", "gh-a", "--org", "o", "--provider", "github")
    local code, _, e2 = rt:cli("integrations", "add", "x1", "--provider", "github")
    assert.are.equal(2, code)
    assert.matches("--org ORG is required", e2, 1, true)
    code, _, e2 = rt:cli("integrations", "list", "--format", "xml")
    assert.are.equal(2, code)
    assert.matches("--format must be table or json", e2, 1, true)
    code = rt:cli("integrations", "sync", "nope")
    assert.are.equal(2, code)
    assert.are.equal(1, #rt:json("integrations", "list")) -- nothing was stored
  end)

  describe("with junction run", function()
    teardown(function() rt:stop() end)

    it("collects on schedule an integration added while it runs", function()
      rt:start()
      assert.is_table(rt:wait_log(function(l) return l.msg == "junction ready" end, 10))
      local code, _, err = rt:cli("integrations", "add", "gh-live", "--org", "org-live",
        "--provider", "github", "--token-env", "SIM_TOKEN", "--config", config(),
        "--schedule", "366d")
      assert.are.equal(0, code, err)
      -- never run: its first run is made up at once (trigger catch-up)
      local job = rt:wait_job(function(j)
        return j.integration_id == "gh-live" and j.status ~= "queued" and j.status ~= "running"
      end, 30)
      assert.is_table(job, "the run did not finish: " .. util.read_file(rt.log))
      assert.are.equal("succeeded", job.status, job.error)
      assert.are.equal("catch-up", job.trigger)
      assert.matches("^gh%-live@", job.slot_id)
      assert.are.equal(ITEMS, job.items)
      assert.are.equal(ITEMS, job.changes.added)
      local lines = util.lines(select(2, rt:cli("evidence", "export", "--integration", "gh-live")))
      assert.are.equal(ITEMS, #lines)
      assert.are.equal("gh-live", cjson.decode(lines[1]).integration_id)
      -- gh-a, added before the start, ran as well
      assert.is_table(rt:wait_job(function(j)
        return j.integration_id == "gh-a" and j.status == "succeeded"
      end, 30))
    end)

    it("runs a manual sync at high priority", function()
      local code, out, err = rt:cli("integrations", "sync", "gh-live")
      assert.are.equal(0, code, err)
      local id = out:match("queued job (%x+) for integration 'gh%-live' %(priority high%)")
      assert.is_string(id, out)
      local job = rt:wait_job(function(j) return j.id == id and j.status == "succeeded" end, 30)
      assert.is_table(job, "the sync did not finish")
      assert.are.equal("manual", job.trigger)
      assert.are.equal("high", job.priority)
      assert.are.equal(cjson.null, job.slot_id)
      -- the same resources again: nothing added, changed or removed
      assert.are.same({ 0, 0, 0 }, { job.changes.added, job.changes.changed, job.changes.removed })
      -- the evidence of both runs is kept, each with its own run id
      local _, out2 = rt:cli("evidence", "export", "--integration", "gh-live")
      assert.are.equal(2 * ITEMS, #util.lines(out2))
      local _, out3 = rt:cli("evidence", "export", "--job", id)
      assert.are.equal(ITEMS, #util.lines(out3))
      local _, future = rt:cli("evidence", "export", "--since", "2999-01-01")
      assert.are.equal("", future)
      local c4, _, e4 = rt:cli("evidence", "export", "--since", "yesterday")
      assert.are.equal(2, c4)
      assert.matches("--since must be a UTC time", e4, 1, true)
    end)

    it("runs an integration again at each slot of its schedule", function()
      local code, _, err = rt:cli("integrations", "add", "gh-tick", "--org", "org-tick",
        "--provider", "github", "--token-env", "SIM_TOKEN", "--config", config(),
        "--schedule", "3s")
      assert.are.equal(0, code, err)
      local job = rt:wait_job(function(j)
        return j.integration_id == "gh-tick" and j.trigger == "schedule" and
               j.status == "succeeded"
      end, 60)
      assert.is_table(job, "no scheduled run: " .. cjson.encode(rt:jobs("gh-tick")))
      assert.matches("^gh%-tick@", job.slot_id)
      assert.are.equal(0, (rt:cli("integrations", "disable", "gh-tick")))
      -- one job per slot: no slot id twice
      local seen = {}
      for _, j in ipairs(rt:jobs("gh-tick")) do
        if j.slot_id ~= cjson.null then
          assert.is_nil(seen[j.slot_id], j.slot_id)
          seen[j.slot_id] = true
        end
      end
    end)

    it("cancels the queued runs of removed and disabled integrations", function()
      rt:stop()
      local _, out1 = rt:cli("integrations", "sync", "gh-a")
      local _, out2 = rt:cli("integrations", "sync", "gh-live")
      local removed = out1:match("queued job (%x+)")
      local disabled = out2:match("queued job (%x+)")
      assert.is_string(removed)
      assert.is_string(disabled)
      assert.are.equal(0, (rt:cli("integrations", "rm", "gh-a")))
      assert.are.equal(0, (rt:cli("integrations", "disable", "gh-live")))
      rt:start()
      local a = rt:wait_job(function(j) return j.id == removed and j.status ~= "queued" end, 15)
      local b = rt:wait_job(function(j) return j.id == disabled and j.status ~= "queued" end, 15)
      assert.are.equal("cancelled", a.status)
      assert.are.equal("integration 'gh-a' was removed", a.error)
      assert.are.equal("cancelled", b.status)
      assert.are.equal("the integration is disabled", b.error)
      assert.are.equal(0, (rt:cli("integrations", "enable", "gh-live")))
    end)

    it("never writes the token anywhere", function()
      local _, out = rt:cli("integrations", "list", "--format", "json")
      no_canary(out)
      local _, jobs = rt:cli("jobs", "list", "--limit", "0", "--format", "json")
      no_canary(jobs)
      no_canary(rt:all_text())
    end)
  end)
end)

describe("junction run with an integrations file", function()
  local sim, rt

  setup(function()
    sim = simulator.start{ members = MEMBERS, repos = REPOS }
    rt = runtime.new{ conf = { "allow_hosts = 127.0.0.1" }, env = { SIM_TOKEN = "sim-token" } }
    util.write_file(rt.dir .. "/integrations.json", cjson.encode({
      { id = "file-1", organization_id = "org-f", provider = "github", token_env = "SIM_TOKEN",
        interval_s = 3600, config = { organization = "acme", base_url = sim:url() } },
      { id = "file-2", organization_id = "org-f", provider = "github", token_env = "SIM_TOKEN",
        schedule = "@daily", jitter = "10m", priority = "high",
        config = { organization = "acme", base_url = sim:url() } },
    }))
    util.write_file(rt.conf, util.read_file(rt.conf) .. "integrations_file = " .. rt.dir ..
      "/integrations.json\n")
  end)

  teardown(function()
    rt:cleanup()
    sim:stop()
  end)

  it("imports the file into the store at start and runs it", function()
    rt:start()
    local ready = rt:wait_log(function(l) return l.msg == "junction ready" end, 10)
    assert.is_table(ready)
    assert.are.equal(2, ready.integrations)
    assert.are.equal("api,scheduler,worker", ready.roles)
    local imported = rt:wait_log(function(l) return l.msg == "integrations imported" end, 1)
    assert.are.equal(2, imported.integrations)
    assert.are.equal(2, imported.changed)
    local it2 = rt:json("integrations", "show", "file-2")[1]
    assert.are.equal("@daily", it2.schedule)
    assert.are.equal("10m", it2.jitter)
    assert.are.equal("high", it2.priority)
    assert.are.equal("1h", rt:json("integrations", "show", "file-1")[1].schedule)
    assert.is_table(rt:wait_job(function(j)
      return j.integration_id == "file-1" and j.status == "succeeded"
    end, 30))
  end)

  it("keeps an integration disabled from the command line across restarts", function()
    assert.are.equal(0, (rt:cli("integrations", "disable", "file-2")))
    rt:stop()
    rt:start()
    local ready = rt:wait_log(function(l)
      return l.msg == "integrations imported" and l.changed == 0
    end, 10)
    assert.is_table(ready, "the second import changed something: " .. util.read_file(rt.log))
    assert.is_false(rt:json("integrations", "show", "file-2")[1].enabled)
    -- the slot that already ran is not run again after the restart (a run
    -- of file-1's next hourly slot is right when the clock passed that slot
    -- during the test: what must not happen is a slot run twice)
    os.execute("sleep 2")
    local jobs, slots = rt:jobs("file-1"), {}
    assert.is_true(#jobs >= 1)
    for _, j in ipairs(jobs) do
      assert.is_string(j.slot_id, "a scheduled run without its slot: " .. cjson.encode(j))
      assert.is_nil(slots[j.slot_id], "slot " .. j.slot_id .. " ran twice: " .. cjson.encode(jobs))
      slots[j.slot_id] = true
    end
    rt:stop()
  end)

  it("refuses an invalid schedule in the file, naming the element", function()
    util.write_file(rt.dir .. "/bad.json", cjson.encode({
      { id = "b", organization_id = "o", provider = "github", schedule = "*/5 * * * * *" },
    }))
    util.write_file(rt.dir .. "/bad.conf", util.read_file(rt.conf):gsub("integrations.json",
      "bad.json"))
    local cmd = rt:command({ "run", "--config", rt.dir .. "/bad.conf" })
    local out = util.sh(cmd .. " 2>&1 < /dev/null; echo rc=$?")
    assert.matches("bad.json: integration [1]: invalid schedule '*/5 * * * * *': more than 5 " ..
      "fields at column 13", out, 1, true)
    assert.matches("rc=2", out, 1, true)
    out = util.sh(rt:command({ "run", "--roles", "api,cron" }) .. " 2>&1 < /dev/null; echo rc=$?")
    assert.matches("--roles: unknown role 'cron' (api, scheduler, worker)", out, 1, true)
    assert.matches("rc=2", out, 1, true)
  end)
end)
