-- The connector authoring kit through the binary: `junction connector new`
-- writes a scaffold that validates; `junction connector test --record` runs
-- its spec against a real HTTP peer and saves the exchanges with the
-- credential and secret-shaped values redacted; `junction connector test`
-- replays them offline (the peer stopped) and fails clearly on a request
-- nobody recorded; `junction connector deploy` runs the specs first. The
-- shipped example (connectors/github.lua, recorded against the simulator)
-- passes offline too. ctest sets JUNCTION_BIN.
local peer = require "helpers.peer"
local util = require "helpers.util"

local BIN = os.getenv("JUNCTION_BIN") or "./build/junction"
local q = util.shell_quote

-- A token shaped like a GitHub token: the redactor knows it as the job's
-- credential and by its shape.
local CANARY = "ghp_KITCANARY0123456789abcdefghijklmnopqrs"

-- Runs `junction ...` with env (a table), stdin closed; exit code, stdout, stderr.
local function junction(dir, env, ...)
  local cmd = { "env", "-u", "JUNCTION_CONFIG", "-u", "JUNCTION_DATA_DIR" }
  for k, v in pairs(env or {}) do cmd[#cmd + 1] = q(k .. "=" .. v) end
  cmd[#cmd + 1] = q(BIN)
  for _, a in ipairs({ ... }) do cmd[#cmd + 1] = q(a) end
  local out, err = dir .. "/stdout", dir .. "/stderr"
  local code = tonumber(util.sh(table.concat(cmd, " ") .. " > " .. q(out) .. " 2> " .. q(err) ..
    " < /dev/null; echo $?"):match("(%d+)%s*$"))
  local stderr = util.read_file(err)
  -- a sanitizer build reports errors and leaks on stderr: none may appear
  assert(not stderr:find("Sanitizer", 1, true), "sanitizer report:\n" .. stderr)
  return code, util.read_file(out), stderr
end

local function ls(dir)
  local names = {}
  for name in util.sh("ls " .. q(dir) .. " 2>/dev/null"):gmatch("[^\n]+") do
    names[#names + 1] = name
  end
  return names
end

local function all_fixtures(dir)
  local parts = {}
  for _, name in ipairs(ls(dir)) do parts[#parts + 1] = util.read_file(dir .. "/" .. name) end
  return table.concat(parts, "\n")
end

describe("connector authoring kit", function()
  local dir, kp, file, spec, fixtures

  setup(function()
    dir = util.sh("mktemp -d"):gsub("%s+$", "")
    file = dir .. "/connectors/acme_hr.lua"
    spec = dir .. "/connectors/tests/acme_hr_spec.lua"
    fixtures = dir .. "/connectors/tests/fixtures/acme_hr"
    kp = peer.start("spec/helpers/kit_peer.js", { "--token", CANARY })
  end)

  teardown(function()
    if kp then kp:stop() end
    os.execute("rm -rf " .. q(dir))
  end)

  it("refuses a name, capability or auth type it cannot use", function()
    local code, _, err = junction(dir, nil, "connector", "new", "Acme-HR", "--dir", dir .. "/x")
    assert.are.equal(2, code)
    assert.matches("expected a lower-case identifier", err, 1, true)
    code, _, err = junction(dir, nil, "connector", "new", "acme_hr", "--dir", dir .. "/x",
      "--capabilities", "evidence_collection,telepathy")
    assert.are.equal(2, code)
    assert.matches("unknown capability 'telepathy'", err, 1, true)
    code, _, err = junction(dir, nil, "connector", "new", "acme_hr", "--dir", dir .. "/x",
      "--auth-type", "api_keys")
    assert.are.equal(2, code)
    assert.matches("unknown value 'api_keys' (did you mean 'api_key'?)", err, 1, true)
    assert.are.same({}, ls(dir .. "/x"))
  end)

  it("writes a scaffold with the functions of the chosen capabilities that validates", function()
    local code, out, err = junction(dir, nil, "connector", "new", "acme_hr", "--dir",
      dir .. "/connectors", "--capabilities",
      "evidence_collection,webhook_receiver,bidirectional,streaming", "--egress",
      "api.acme-hr.example")
    assert.are.equal(0, code, err)
    assert.matches("wrote " .. file, out, 1, true)
    local src = util.read_file(file)
    for _, fn in ipairs({ "test_connection", "collect_evidence", "handle_webhook",
                          "execute_action", "stream" }) do
      assert.matches("function c." .. fn .. "(", src, 1, true)
    end
    assert.matches("describe(\"acme_hr connector\"", util.read_file(spec), 1, true)
    assert.are.equal(0, #ls(fixtures))
    code, out = junction(dir, nil, "connector", "validate", file)
    assert.are.equal(0, code)
    assert.matches("ok (acme_hr 0.1.0, capabilities: evidence_collection webhook_receiver " ..
      "bidirectional streaming)", out, 1, true)
    -- an existing connector is not overwritten
    code, _, err = junction(dir, nil, "connector", "new", "acme_hr", "--dir", dir .. "/connectors")
    assert.are.equal(1, code)
    assert.matches("exists already", err, 1, true)
  end)

  it("fails clearly without recorded fixtures", function()
    local code, out, err = junction(dir, nil, "connector", "test", file)
    assert.are.equal(1, code)
    assert.matches("no recorded exchange for GET", out, 1, true)
    assert.matches("--record", out, 1, true)
    assert.matches("no recorded exchanges in", err, 1, true)
  end)

  it("records every exchange against the provider, redacted", function()
    local code, out, err = junction(dir, { KIT_TOKEN = CANARY }, "connector", "test", file,
      "--record", "--config", '{"base_url": "' .. kp:url() .. '"}', "--token-env", "KIT_TOKEN",
      "--allow-host", "127.0.0.1")
    assert.are.equal(0, code, out .. err)
    assert.matches("6 successes / 0 failures", out, 1, true)
    local names = ls(fixtures)
    -- test_connection, collect_evidence, execute_action, stream (the webhook makes no request)
    assert.are.equal(5, #names) -- 4 exchanges and config.json
    assert.are.equal("config.json", names[#names])
    assert.matches("^0001%-get%-127%-0%-0%-1%-%d+%-me%.json$", names[1])
    local text = all_fixtures(fixtures)
    assert.is_nil(text:find("KITCANARY", 1, true), "the credential reached a fixture")
    assert.is_nil(text:find("hunter2-kit-peer-secret", 1, true), "a secret-shaped value was kept")
    assert.matches("[REDACTED]", text, 1, true)
    -- the request body of the POST is kept (it holds no secret), with its hash
    assert.matches('"body": "{\\"name\\":\\"from-spec\\"}"', text, 1, true)
    assert.is_nil(out:find("KITCANARY", 1, true))
    assert.is_nil(err:find("KITCANARY", 1, true))
  end)

  it("replays them offline, deterministically", function()
    kp:stop()
    kp = nil
    for _ = 1, 2 do
      local code, out, err = junction(dir, nil, "connector", "test", file)
      assert.are.equal(0, code, out .. err)
      assert.matches("6 successes / 0 failures", out, 1, true)
    end
  end)

  it("fails a request nobody recorded, naming it", function()
    local src = util.read_file(file)
    local changed = src:gsub('"/items"%)', '"/items?page=2")', 1)
    assert.are_not.equal(src, changed)
    util.write_file(file, changed, "644")
    local code, out = junction(dir, nil, "connector", "test", file)
    assert.are.equal(1, code)
    assert.matches("no recorded exchange for GET http://127.0.0.1:%d+/items", out)
    -- a deploy runs the specs first and refuses a connector that fails them
    local data = dir .. "/data"
    local env = { JUNCTION_DATA_DIR = data }
    code, out, err = junction(dir, env, "connector", "deploy", file)
    assert.are.equal(1, code)
    assert.matches("deploy refused; nothing changed", err, 1, true)
    assert.matches("its specs failed against its recorded fixtures", err, 1, true)
    code = junction(dir, env, "connector", "history", "acme_hr")
    assert.are.equal(1, code) -- never deployed
    util.write_file(file, src, "644")
    code, out, err = junction(dir, env, "connector", "deploy", file)
    assert.are.equal(0, code, out .. err)
    assert.matches("running " .. spec, out, 1, true)
    assert.matches("deployed acme_hr 0.1.0, deploy 1", out, 1, true)
  end)

  it("ships the GitHub connector's spec and fixtures, recorded against the simulator", function()
    local code, out, err = junction(dir, nil, "connector", "test", "connectors/github.lua")
    assert.are.equal(0, code, out .. err)
    assert.matches("4 successes / 0 failures", out, 1, true)
    local text = all_fixtures("connectors/tests/fixtures/github")
    assert.is_nil(text:lower():find("authorization\": \"", 1, true))
    assert.is_nil(text:find("sim-token", 1, true))
  end)
end)
