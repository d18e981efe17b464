-- Hot deploys through the binary: `junction connector deploy|rollback|
-- history` on the store of a running `junction run`, which picks each
-- change up (connector_poll_ms) so that the runs started afterwards use it;
-- refused deploys that change nothing; pins; a restart that loads the
-- deployed versions; development mode's redeploy on save; production mode
-- with signed connectors. ctest sets JUNCTION_BIN.
local cjson = require "cjson.safe"
local runtime = require "helpers.runtime"
local util = require "helpers.util"

-- A connector without HTTP that reports the version it ran as evidence.
local function connector(version, variant, provider)
  return ([[
local c = connector {
  provider_type = "%s", display_name = "Deploy test", description = "reports its version",
  version = "%s", auth_types = { "none" }, capabilities = { "evidence_collection" },
  rate_limits = { requests_per_second = 10 }, egress = { "example.invalid" },
  documentation_url = "https://example.invalid/docs",
}
function c.test_connection() return { success = true } end
function c.collect_evidence(ctx)
  ctx.emit{ resource_type = "deploy.run", resource_id = ctx.run_id,
            data = { version = ctx.connector_version, variant = "%s" } }
end
return c
]]):format(provider or "deploytest", version, variant)
end

describe("connector deploys", function()
  local rt, staging

  local function stage(name, text)
    local path = staging .. "/" .. name
    util.write_file(path, text, "644")
    return path
  end

  -- Enqueues a run of the integration now and returns its finished job record.
  local function run(integration)
    local code, out, err = rt:cli("integrations", "sync", integration)
    assert.are.equal(0, code, err)
    local id = out:match("queued job (%x+)")
    assert.is_string(id, out)
    local job = rt:wait_job(function(j)
      return j.id == id and j.status ~= "queued" and j.status ~= "running"
    end, 30)
    assert.is_table(job, util.read_file(rt.log))
    return job
  end

  local function wait_live(version, extra)
    return rt:wait_log(function(l)
      return l.msg == "connector live" and l.provider == "deploytest" and l.version == version
        and (extra == nil or extra(l))
    end, 10)
  end

  local function history()
    return rt:json("connector", "history", "deploytest")
  end

  setup(function()
    rt = runtime.new{ connectors = {}, conf = { "connector_poll_ms = 50", "queue_max_attempts = 1" } }
    staging = rt.dir .. "/staging"
    os.execute("mkdir -p " .. util.shell_quote(staging))
    rt:connector("deploytest.lua", connector("1.0.0", "A"))
    rt:start()
    assert.is_table(rt:wait_log(function(l) return l.msg == "junction ready" end, 10),
      util.read_file(rt.log))
    local code, _, err = rt:cli("integrations", "add", "dt-1", "--org", "org-1", "--provider",
      "deploytest", "--schedule", "366d")
    assert.are.equal(0, code, err)
  end)

  teardown(function()
    rt:stop()
    rt:cleanup()
  end)

  it("starts with the connectors directory's version and records where it came from", function()
    assert.are.equal("1.0.0", run("dt-1").connector_version)
    local h = history()
    assert.are.equal(1, #h)
    assert.are.equal("connectors_dir", h[1].actor)
    assert.is_true(h[1].live)
  end)

  it("makes a CLI deploy live in the running process; later runs use it", function()
    local code, out, err = rt:cli("connector", "deploy", stage("deploytest.lua",
      connector("1.1.0", "B")), "--actor", "spec")
    assert.are.equal(0, code, err)
    assert.matches("deployed deploytest 1.1.0 (was 1.0.0), deploy 2", out, 1, true)
    assert.is_table(wait_live("1.1.0", function(l) return l.actor == "spec" end),
      util.read_file(rt.log))
    local job = run("dt-1")
    assert.are.equal("succeeded", job.status, job.error)
    assert.are.equal("1.1.0", job.connector_version)
    local _, ev = rt:cli("evidence", "export", "--integration", "dt-1")
    assert.matches('"variant":"B"', ev, 1, true)
  end)

  it("refuses broken deploys with the reason and changes nothing", function()
    local before = #history()
    local cases = {
      { connector("1.2.0", "C"):gsub("function c.collect_evidence", "function c.collect_evidenze"),
        "function 'collect_evidence' is missing: capability 'evidence_collection' requires it" },
      { "local c = connector { provider_type = 'deploytest' ", "does not compile" },
      { connector("1.0.5", "C"), "version 1.0.5 is not higher than the live version 1.1.0" },
      { connector("1.1.0", "C"), "version 1.1.0 is not higher than the live version 1.1.0" },
    }
    for _, case in ipairs(cases) do
      local code, _, err = rt:cli("connector", "deploy", stage("deploytest.lua", case[1]))
      assert.are.equal(1, code)
      assert.matches("deploy refused; nothing changed", err, 1, true)
      assert.matches(case[2], err, 1, true)
    end
    assert.are.equal(before, #history())
    assert.are.equal("1.1.0", run("dt-1").connector_version)
    -- the same source again is not a new deploy
    local code, out = rt:cli("connector", "deploy", stage("deploytest.lua", connector("1.1.0", "B")))
    assert.are.equal(0, code)
    assert.matches("already live", out, 1, true)
  end)

  it("rolls back to the previous version, and forward again", function()
    local code, out, err = rt:cli("connector", "rollback", "deploytest")
    assert.are.equal(0, code, err)
    assert.matches("rolled back: deploytest 1.0.0 (was 1.1.0)", out, 1, true)
    assert.is_table(wait_live("1.0.0", function(l) return l.action == "rollback" end))
    assert.are.equal("1.0.0", run("dt-1").connector_version)
    code, _, err = rt:cli("connector", "rollback", "deploytest")
    assert.are.equal(1, code)
    assert.matches("nothing to roll back to", err, 1, true)
    local h = history()
    assert.are.equal("rollback", h[1].action)
    assert.are.equal("1.0.0", h[1].version)
    assert.is_true(h[1].live)
    assert.is_false(h[2].live)
  end)

  it("runs a pinned integration on its version, whatever is live", function()
    local code, _, err = rt:cli("integrations", "add", "dt-pin", "--org", "org-2", "--provider",
      "deploytest", "--schedule", "366d", "--connector-version", "1.1.0")
    assert.are.equal(0, code, err)
    local job = run("dt-pin")
    assert.are.equal("succeeded", job.status, job.error)
    assert.are.equal("1.1.0", job.connector_version)
    assert.are.equal("1.0.0", run("dt-1").connector_version)
    code, _, err = rt:cli("integrations", "add", "dt-pin-bad", "--org", "org-3", "--provider",
      "deploytest", "--schedule", "366d", "--connector-version", "9.9.9")
    assert.are.equal(0, code, err)
    job = run("dt-pin-bad")
    assert.matches("pinned to connector version 9.9.9, but deploytest 1.0.0 is live and "
      .. "deploytest 9.9.9 was never deployed", job.error, 1, true)
  end)

  it("loads the deployed versions after a restart, not the directory's", function()
    local code, _, err = rt:cli("connector", "deploy", stage("deploytest.lua",
      connector("1.2.0", "D")))
    assert.are.equal(0, code, err)
    assert.is_table(wait_live("1.2.0"))
    rt:stop()
    rt:start()
    assert.is_table(rt:wait_log(function(l) return l.msg == "junction ready" end, 10))
    -- connectors/deploytest.lua (1.0.0) was deployed before: it stays replaced
    assert.are.equal("1.2.0", run("dt-1").connector_version)
    assert.are.equal("deploy", history()[1].action)
  end)

  it("redeploys a connector saved in the connectors directory (development mode)", function()
    rt:connector("deploytest.lua", connector("1.3.0", "E"))
    assert.is_table(wait_live("1.3.0", function(l) return l.actor == "watch:deploytest.lua" end),
      util.read_file(rt.log))
    assert.are.equal("1.3.0", run("dt-1").connector_version)
    -- a broken save is logged and changes nothing
    rt:connector("deploytest.lua", "local c = connector {")
    assert.is_table(rt:wait_log(function(l)
      return l.msg == "connector rejected" and l.errors:find("does not compile", 1, true)
    end, 10))
    assert.are.equal("1.3.0", run("dt-1").connector_version)
  end)
end)

describe("connector deploys in production mode", function()
  local rt, keys, pem_line

  local function sign(path, key)
    return rt:cli("connector", "sign", path, "--key", key or keys .. "/release.pem")
  end

  setup(function()
    local dir = util.sh("mktemp -d"):gsub("%s+$", "")
    keys = dir
    rt = runtime.new{ connectors = {}, conf = {
      "connector_mode = production",
      "connector_trusted_keys = " .. dir .. "/release.pub",
      "connector_poll_ms = 50",
    } }
    local code, out, err = rt:cli("connector", "keygen", "--out", dir .. "/release.pem")
    assert.are.equal(0, code, err)
    assert.matches("^key %x+\n", out)
    pem_line = util.lines(util.read_file(dir .. "/release.pem"))[2]
    code, _, err = rt:cli("connector", "keygen", "--out", dir .. "/rogue.pem")
    assert.are.equal(0, code, err)
    rt:connector("deploytest.lua", connector("1.0.0", "A"))
    rt:connector("signedtest.lua", connector("1.0.0", "A", "signedtest"))
    code, _, err = sign(rt.connectors .. "/signedtest.lua")
    assert.are.equal(0, code, err)
    rt:start()
    assert.is_table(rt:wait_log(function(l) return l.msg == "junction ready" end, 10),
      util.read_file(rt.log))
  end)

  teardown(function()
    rt:stop()
    rt:cleanup()
    os.execute("rm -rf " .. util.shell_quote(keys))
  end)

  it("loads only the signed connector of the directory", function()
    local rejected = rt:wait_log(function(l)
      return l.msg == "connector rejected" and l.file:find("deploytest.lua", 1, true)
    end, 1)
    assert.is_table(rejected)
    assert.matches("deploytest.lua: unsigned", rejected.errors, 1, true)
    assert.is_table(rt:wait_log(function(l)
      return l.msg == "connector live" and l.provider == "signedtest"
    end, 1))
  end)

  it("refuses unsigned, untrusted and tampered deploys, then deploys a signed one", function()
    local path = rt.dir .. "/signedtest-2.lua"
    util.write_file(path, connector("1.1.0", "B", "signedtest"), "644")
    local code, _, err = rt:cli("connector", "deploy", path)
    assert.are.equal(1, code)
    assert.matches("unsigned: it has no signature", err, 1, true)
    code, _, err = sign(path, keys .. "/rogue.pem")
    assert.are.equal(0, code, err)
    code, _, err = rt:cli("connector", "deploy", path)
    assert.are.equal(1, code)
    assert.matches("which is not one of the trusted keys", err, 1, true)
    code, _, err = sign(path)
    assert.are.equal(0, code, err)
    util.write_file(path, connector("1.1.0", "B", "signedtest") .. "-- changed\n", "644")
    code, _, err = rt:cli("connector", "deploy", path)
    assert.are.equal(1, code)
    assert.matches("tampered: the file changed after it was signed", err, 1, true)
    util.write_file(path, connector("1.1.0", "B", "signedtest"), "644")
    local out
    code, out, err = rt:cli("connector", "deploy", path)
    assert.are.equal(0, code, err)
    assert.matches("deployed signedtest 1.1.0 (was 1.0.0)", out, 1, true)
    assert.is_table(rt:wait_log(function(l)
      return l.msg == "connector live" and l.provider == "signedtest" and l.version == "1.1.0"
    end, 10))
    local h = rt:json("connector", "history", "signedtest")
    assert.are.equal(h[2].key_id, h[1].key_id)
    assert.is_string(h[1].key_id)
    -- the private key never reaches the log or the store
    assert.is_nil(rt:all_text():find(pem_line, 1, true))
  end)

  it("does not redeploy on save: production deploys only on request", function()
    rt:connector("signedtest.lua", connector("1.5.0", "C", "signedtest"))
    sign(rt.connectors .. "/signedtest.lua")
    os.execute("sleep 1")
    assert.is_nil(rt:wait_log(function(l)
      return l.msg == "connector live" and l.version == "1.5.0"
    end, 1))
  end)
end)
