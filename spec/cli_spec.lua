-- The junction binary end to end: connector validation, a collection against
-- the provider simulator, and the version. ctest sets JUNCTION_BIN.
local cjson = require "cjson"
local simulator = require "helpers.simulator"

local BIN = os.getenv("JUNCTION_BIN") or "./build/junction"
local TOKEN = "sim-token"
local CANARY = "ghp_CANARYBAD456789abcdefghijklmnopqrstu"
local MEMBERS, REPOS = 300, 120

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

local function write_temp(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- Runs the binary with the given arguments; returns exit code, stdout, stderr.
local function junction(...)
  local args = { shell_quote(BIN) }
  for _, a in ipairs({ ... }) do args[#args + 1] = shell_quote(a) end
  local out, err = os.tmpname(), os.tmpname()
  local p = assert(io.popen(table.concat(args, " ") .. " > " .. shell_quote(out) .. " 2> " ..
    shell_quote(err) .. " < /dev/null; echo $?"))
  local code = tonumber(p:read("*a"):match("(%d+)%s*$"))
  p:close()
  local stdout, stderr = read_file(out), read_file(err)
  os.remove(out)
  os.remove(err)
  return code, stdout, stderr
end

local function lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

local VALID = [[
local c = connector {
  provider_type = "demo",
  display_name = "Demo",
  description = "A connector for the CLI spec",
  version = %s,
  auth_types = { "api_key" },
  capabilities = %s,
  egress = { "api.example.com" },
  rate_limits = { requests_per_second = 1 },
  documentation_url = "https://example.com/docs",%s
}
function c.test_connection(ctx) return { success = true, message = "ok" } end
function c.collect_evidence(ctx, config) end
return c
]]

local function connector_source(version, capabilities, extra)
  return VALID:format(version or '"1.0.0"', capabilities or '{ "evidence_collection" }',
    extra or "")
end

describe("junction (the binary)", function()
  local temp = {}

  local function temp_file(text)
    local path = write_temp(text)
    temp[#temp + 1] = path
    return path
  end

  teardown(function()
    for _, path in ipairs(temp) do os.remove(path) end
  end)

  it("prints its version", function()
    local code, out = junction("version")
    assert.are.equal(0, code)
    assert.matches("^junction %d+%.%d+%.%d+", out)
    assert.matches(require("junction.testing").version, out, 1, true)
  end)

  describe("connector validate", function()
    it("accepts the GitHub connector", function()
      local code, out, err = junction("connector", "validate", "connectors/github.lua")
      assert.are.equal(0, code, err)
      assert.matches("connectors/github.lua: ok (github 1.0.0", out, 1, true)
    end)

    it("accepts a minimal valid connector (the fixture the broken ones start from)", function()
      local code, _, err = junction("connector", "validate", temp_file(connector_source()))
      assert.are.equal(0, code, err)
    end)

    local broken = {
      { "a syntax error", "local c = connector {\n  provider_type = \"demo\",\n  oops oops\n}",
        "does not compile" },
      { "a missing version", connector_source("nil"), "field 'version' is missing" },
      { "wrong-typed capabilities", connector_source(nil, '"evidence_collection"'),
        "field 'capabilities': expected a list of strings, got string" },
      { "an unknown field", connector_source(nil, nil, '\n  egres_hosts = { "x" },'),
        "unknown field 'egres_hosts'" },
      { "an unknown capability", connector_source(nil, '{ "evidence_colection" }'),
        "did you mean 'evidence_collection'" },
    }
    for _, case in ipairs(broken) do
      it("rejects " .. case[1] .. ", naming the file and the problem", function()
        local path = temp_file(case[2])
        local code, _, err = junction("connector", "validate", path)
        assert.are_not.equal(0, code)
        assert.matches(path, err, 1, true)
        assert.matches(case[3], err, 1, true)
      end)
    end

    it("validates several files and fails if any is broken", function()
      local code, out, err = junction("connector", "validate", "connectors/github.lua",
        temp_file(connector_source("nil")))
      assert.are.equal(1, code)
      assert.matches("github.lua: ok", out, 1, true)
      assert.matches("version", err, 1, true)
    end)
  end)

  describe("collect", function()
    local sim, token_file

    setup(function()
      sim = simulator.start{ members = MEMBERS, repos = REPOS, tokens = { TOKEN } }
      token_file = temp_file(TOKEN .. "\n")
    end)

    teardown(function()
      if sim then sim:stop() end
    end)

    local function config(org)
      return cjson.encode({ organization = org or "acme", base_url = sim:url() })
    end

    it("prints one evidence item per line on stdout and logs on stderr", function()
      local code, out, err = junction("collect", "connectors/github.lua", "--config", config(),
        "--allow-host", "127.0.0.1", "--token-file", token_file)
      assert.are.equal(0, code, err)
      local counts, ids = {}, {}
      for _, line in ipairs(lines(out)) do
        local item = cjson.decode(line)
        counts[item.resource_type] = (counts[item.resource_type] or 0) + 1
        assert.is_nil(ids[item.id])
        ids[item.id] = true
        assert.are.equal("github", item.provider_type)
        assert.are.equal(64, #item.checksum)
      end
      assert.are.same({ ["github.organization"] = 1, ["github.member"] = MEMBERS,
                        ["github.repository"] = REPOS }, counts)
      -- stderr: the runtime's and the connector's log lines, as JSON
      local finished
      for _, line in ipairs(lines(err)) do
        local entry = cjson.decode(line)
        if entry.msg == "collection finished" and entry.status then finished = entry end
      end
      assert.are.equal("succeeded", finished.status)
      assert.are.equal(1 + MEMBERS + REPOS, finished.items)
    end)

    it("exits non-zero on a bad token and never prints it", function()
      local bad = temp_file(CANARY)
      local code, out, err = junction("collect", "connectors/github.lua", "--config", config(),
        "--allow-host", "127.0.0.1", "--token-file", bad)
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("401", err, 1, true)
      assert.matches("Bad credentials", err, 1, true)
      assert.is_nil(out:find("CANARY", 1, true))
      assert.is_nil(err:find("CANARY", 1, true))
    end)

    it("exits non-zero with a clear message when the organization is missing", function()
      local code, out, err = junction("collect", "connectors/github.lua", "--config",
        cjson.encode({ base_url = sim:url() }), "--allow-host", "127.0.0.1",
        "--token-file", token_file)
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("config.organization is required", err, 1, true)
    end)

    it("refuses the simulator's address unless it is allowed", function()
      local code, out, err = junction("collect", "connectors/github.lua", "--config", config(),
        "--token-file", token_file)
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("egress denied", err, 1, true)
    end)
  end)
end)
