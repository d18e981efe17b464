-- `junction run`, the runtime process, end to end: it starts on the embedded
-- default, loads the connectors it can, reports the ones it cannot, collects
-- on schedule into its store, keeps serving while a connector fails, and
-- stops cleanly on SIGTERM.
local simulator = require "helpers.simulator"
local cjson = require "cjson.safe"

local BIN = os.getenv("JUNCTION_BIN") or "./build/junction"

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function read_lines(path)
  local lines = {}
  local f = io.open(path)
  if not f then return lines end
  for line in f:lines() do lines[#lines + 1] = cjson.decode(line) or { raw = line } end
  f:close()
  return lines
end

local function find(lines, pred)
  for _, l in ipairs(lines) do if pred(l) then return l end end
end

local function wait_for(path, pred, seconds)
  for _ = 1, seconds * 10 do
    local hit = find(read_lines(path), pred)
    if hit then return hit end
    os.execute("sleep 0.1")
  end
end

describe("junction run", function()
  local sim, dir, pid, logfile

  setup(function()
    sim = simulator.start{ members = 300, repos = 120 }
    dir = sh("mktemp -d"):gsub("%s+$", "")
    os.execute("mkdir -p " .. dir .. "/connectors " .. dir .. "/data")
    os.execute("cp connectors/github.lua " .. dir .. "/connectors/")
    write(dir .. "/connectors/broken.lua", "local c = connector { provider_type = 'broken' ")
    write(dir .. "/connectors/failing.lua", [[
      local c = connector {
        provider_type = "failing", display_name = "Failing", description = "fails on purpose",
        version = "0.1.0", auth_types = { "none" }, capabilities = { "evidence_collection" },
        rate_limits = { requests_per_second = 1 }, egress = { "example.invalid" },
        documentation_url = "https://example.invalid/docs",
      }
      function c.test_connection() return { success = false } end
      function c.collect_evidence(ctx) while true do end end
      return c
    ]])
    write(dir .. "/integrations.json", cjson.encode({
      { id = "gh-1", organization_id = "org-a", provider = "github", token_env = "SIM_TOKEN",
        interval_s = 3600, config = { organization = "acme", base_url = sim:url() } },
      { id = "bad-1", organization_id = "org-b", provider = "failing", interval_s = 3600 },
      { id = "missing-1", organization_id = "org-c", provider = "nonexistent", interval_s = 3600 },
    }))
    write(dir .. "/junction.conf", table.concat({
      "data_dir = " .. dir .. "/data",
      "connectors_dir = " .. dir .. "/connectors",
      "integrations_file = " .. dir .. "/integrations.json",
      "allow_hosts = 127.0.0.1",
      "job_cpu_limit_ms = 1000",
      "listen = 127.0.0.1:0", -- any free port: specs run side by side
    }, "\n") .. "\n")
    logfile = dir .. "/junction.log"
    pid = tonumber(sh("SIM_TOKEN=sim-token " .. BIN .. " run --config " .. dir ..
      "/junction.conf 2> " .. logfile .. " > /dev/null & echo $!"))
  end)

  teardown(function()
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    sim:stop()
    os.execute("rm -rf " .. dir)
  end)

  it("becomes ready and reports the connector it rejected", function()
    local ready = wait_for(logfile, function(l) return l.msg == "junction ready" end, 10)
    assert.is_table(ready, "no ready line")
    assert.are.equal(2, ready.connectors)
    assert.are.equal(3, ready.integrations)
    local rejected = find(read_lines(logfile), function(l) return l.msg == "connector rejected" end)
    assert.is_table(rejected)
    assert.matches("broken.lua", rejected.file, 1, true)
    assert.matches("does not compile", rejected.errors, 1, true)
  end)

  it("collects evidence while a failing connector fails beside it", function()
    local done = wait_for(logfile, function(l)
      return l.msg == "collection finished" and l.integration_id == "gh-1" and l.status
    end, 30)
    assert.is_table(done, "the GitHub collection did not finish")
    assert.are.equal("succeeded", done.status, done.error)
    assert.are.equal(1 + 300 + 120, done.items)
    local failed = wait_for(logfile, function(l)
      return l.msg == "collection finished" and l.integration_id == "bad-1"
    end, 10)
    assert.are.equal("failed", failed.status)
    assert.matches("CPU budget", failed.error, 1, true)
    assert.is_table(find(read_lines(logfile), function(l)
      return l.level == "error" and (l.msg or ""):find("no valid connector for provider 'nonexistent'", 1, true)
    end))
  end)

  it("stores evidence, the checkpoint and job records in its store", function()
    local db = dir .. "/data/junction.db"
    local out = sh("sqlite3 " .. db .. " \"select count(*) from evidence where integration_id='gh-1';" ..
      " select status from jobs where integration_id='gh-1';" ..
      " select count(*) from checkpoints where integration_id='gh-1';\"")
    assert.are.equal("421\nsucceeded\n1\n", out)
  end)

  it("never writes the token to its log", function()
    local text = sh("cat " .. logfile)
    assert.is_nil(text:find("sim-token", 1, true))
  end)

  it("stops cleanly on SIGTERM", function()
    os.execute("kill -TERM " .. pid)
    local stopped = wait_for(logfile, function(l) return l.msg == "junction stopped" end, 10)
    assert.is_table(stopped)
    pid = nil
  end)
end)

describe("junction run with a bad integrations file", function()
  it("refuses to start and names the problem", function()
    local dir = sh("mktemp -d"):gsub("%s+$", "")
    write(dir .. "/integrations.json", cjson.encode({
      { id = "dup", organization_id = "o", provider = "github" },
      { id = "dup", organization_id = "o", provider = "github" },
    }))
    write(dir .. "/bad.json", '[{"id": 1}]')
    local function start(file)
      local out = sh("JUNCTION_DATA_DIR=" .. dir .. "/data JUNCTION_INTEGRATIONS_FILE=" .. file ..
        " " .. BIN .. " run 2>&1; echo \"rc=$?\"")
      return out
    end
    local out = start(dir .. "/integrations.json")
    assert.matches("integration [2]: id 'dup' is used twice", out, 1, true)
    assert.matches("rc=2", out, 1, true)
    out = start(dir .. "/bad.json")
    assert.matches("integration [1]: field 'id' must be a string", out, 1, true)
    out = start(dir .. "/missing.json")
    assert.matches("cannot open integrations file", out, 1, true)
    os.execute("rm -rf " .. dir)
  end)
end)
