-- The credential vault end to end through the binary: `junction creds`,
-- `junction collect --credential`, `junction keys rotate` and
-- `junction audit verify`, against the GitHub simulator, with a temporary
-- data directory and a 0600 key file named by JUNCTION_MASTER_KEY_FILE.
-- The canary tokens must never appear in any output, in the evidence or, as
-- plaintext, in the SQLite database and its WAL. "canary secrets on every
-- path" sends them through a provider that echoes the request back (in a
-- 200, a 400 and a 401, body and headers) to a connector that logs, emits
-- and raises everything it can see, and looks for them in its own Lua state.
-- ctest sets JUNCTION_BIN.
local cjson = require "cjson"
local simulator = require "helpers.simulator"
local peer_mod = require "helpers.peer"
local runtime = require "helpers.runtime"
local tokens = require "helpers.tokens"

local BIN = os.getenv("JUNCTION_BIN") or "./build/junction"
local CANARY = "ghp_CANARYVAULT0123456789abcdefghijklmnop"     -- valid simulator token
local CANARY_NEW = "ghp_CANARYVAULTNEW456789abcdefghijklmnop"  -- valid: the rotated token
local CANARY_BAD = "ghp_CANARYVAULTBAD456789abcdefghijklmnop"  -- not known to the simulator
local MEMBERS, REPOS = 20, 10

local util = require "helpers.util"
local shell_quote, sh, read_file, write_file, lines =
  util.shell_quote, util.sh, util.read_file, util.write_file, util.lines

local function no_canary(...)
  for _, text in ipairs({ ... }) do
    assert.is_nil(text:find("CANARYVAULT", 1, true), "a canary secret leaked")
  end
end

local key_line = util.master_key_line

describe("the credential vault (junction creds, keys, audit)", function()
  local sim, vault, dir, data, keyfile, cred_id

  -- Runs the binary with the vault environment (env overrides: false unsets);
  -- returns exit code, stdout, stderr.
  local function junction(env, ...)
    return util.vault_cli(BIN, keyfile, data, dir, env)(...)
  end

  local function doc_file(name, token)
    local path = dir .. "/" .. name
    write_file(path, cjson.encode({ token = token }))
    return path
  end

  local function config()
    return cjson.encode({ organization = "acme", base_url = sim:url() })
  end

  local function collect(id)
    return vault:collect("connectors/github.lua", config(), id or cred_id)
  end

  local function list(org) return (vault:listing(org, no_canary)) end

  local function states(c)
    local s = {}
    for _, v in ipairs(c.versions) do s[v.version] = v.state end
    return s
  end

  local function assert_db_clean() no_canary(vault:stored()) end

  -- `junction run` on the vault with the given integrations (a list) until
  -- done(log lines) says the collections it waits for finished (at most
  -- `seconds`); stops it with SIGTERM. Returns done's last answer and the log.
  local function run_until(integrations, connectors, done, seconds)
    local rt = runtime.new{ data_dir = data, connectors = {},
      conf = { "integrations_file = " .. dir .. "/run-integrations.json",
               "allow_hosts = 127.0.0.1" },
      env = { JUNCTION_MASTER_KEY = false, JUNCTION_MASTER_KEY_FILE = keyfile } }
    finally(function() rt:cleanup() end)
    write_file(dir .. "/run-integrations.json", cjson.encode(integrations))
    for name, source in pairs(connectors) do rt:connector(name, source) end
    rt:start()
    local result = runtime.wait(function() return done(rt:log_lines()) end, seconds)
    rt:stop()
    return result, read_file(rt.log)
  end

  setup(function()
    sim = simulator.start{ members = MEMBERS, repos = REPOS,
                           tokens = { "sim-token", CANARY, CANARY_NEW } }
    vault = tokens.vault()
    dir, data, keyfile = vault.dir, vault.data, vault.keyfile
  end)

  teardown(function() tokens.stop(sim, vault) end)

  describe("setup errors", function()
    it("explains that a master key is needed when none is configured", function()
      local code, out, err = junction({ JUNCTION_MASTER_KEY_FILE = false }, "creds", "list",
        "--org", "acme")
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.matches("JUNCTION_MASTER_KEY_FILE", err, 1, true)
    end)

    it("refuses a key file that group or others can read", function()
      local loose = dir .. "/loose.keys"
      write_file(loose, key_line("k1"), "644")
      local code, out, err = junction({ JUNCTION_MASTER_KEY_FILE = loose }, "creds", "list",
        "--org", "acme")
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.matches("0600", err, 1, true)
    end)

    it("refuses a credential file that group or others can read", function()
      local path = doc_file("loose.json", CANARY)
      os.execute("chmod 644 " .. shell_quote(path))
      local code, out, err = junction(nil, "creds", "put", "--org", "acme", "--provider",
        "github", "--auth-type", "api_key", "--from-file", path)
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.matches("chmod 600", err, 1, true)
      no_canary(out, err)
    end)

    it("rejects a document that is not a valid credential without echoing it", function()
      local path = dir .. "/invalid.json"
      write_file(path, cjson.encode({ tokn = CANARY }))
      local code, out, err = junction(nil, "creds", "put", "--org", "acme", "--provider",
        "github", "--auth-type", "api_key", "--from-file", path)
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.matches("not a valid api_key credential", err, 1, true)
      no_canary(out, err)
    end)

    it("reports usage errors with exit code 2", function()
      local code, _, err = junction(nil, "creds", "put", "--org", "acme")
      assert.are.equal(2, code)
      assert.matches("--provider", err, 1, true)
      code = junction(nil, "creds", "frobnicate")
      assert.are.equal(2, code)
    end)
  end)

  describe("put, list, rm", function()
    it("stores a credential and prints its id and metadata, never the secret", function()
      local code, out, err = junction(nil, "creds", "put", "--org", "acme", "--provider",
        "github", "--auth-type", "api_key", "--from-file", doc_file("gh.json", CANARY),
        "--label", "GitHub acme (read-only)")
      assert.are.equal(0, code, err)
      no_canary(out, err)
      local res = lines(out)
      assert.are.equal(1, #res)
      local c = cjson.decode(res[1])
      assert.matches("^%x+$", c.id)
      assert.are.equal(32, #c.id)
      assert.are.same({ provider = "github", auth_type = "api_key",
                        label = "GitHub acme (read-only)", fields = { "token" } }, c.metadata)
      cred_id = c.id
      assert_db_clean()
    end)

    it("lists metadata, versions and states, never a secret", function()
      local c = list()[cred_id]
      assert.is_not_nil(c)
      assert.are.equal("github", c.provider)
      assert.are.equal("api_key", c.auth_type)
      assert.are.same({ "token" }, c.metadata.fields)
      assert.are.same({ [1] = "current" }, states(c))
    end)

    it("deletes a credential", function()
      local code, out, err = junction(nil, "creds", "put", "--org", "acme", "--provider",
        "github", "--auth-type", "api_key", "--from-file", doc_file("other.json", CANARY_BAD))
      assert.are.equal(0, code, err)
      local other = cjson.decode(out).id
      assert.is_not_nil(list()[other])
      code, out, err = junction(nil, "creds", "rm", "--org", "acme", "--id", other)
      assert.are.equal(0, code, err)
      assert.are.same({ id = other, organization_id = "acme", deleted = true }, cjson.decode(out))
      assert.is_nil(list()[other])
      assert.is_not_nil(list()[cred_id])
      code, out, err = junction(nil, "creds", "rm", "--org", "acme", "--id", other)
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.matches(other, err, 1, true)
    end)

    it("keeps organizations apart", function()
      assert.is_nil(list("globex")[cred_id])
      local code, out, err = junction(nil, "creds", "rm", "--org", "globex", "--id", cred_id)
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.is_not_nil(err)
      assert.is_not_nil(list()[cred_id])
    end)
  end)

  describe("collect --credential", function()
    it("collects with the stored credential; the canary is never printed nor stored", function()
      local code, out, err = collect()
      assert.are.equal(0, code, err)
      no_canary(out, err)
      local counts = {}
      for _, line in ipairs(lines(out)) do
        local item = cjson.decode(line)
        counts[item.resource_type] = (counts[item.resource_type] or 0) + 1
      end
      assert.are.same({ ["github.organization"] = 1, ["github.member"] = MEMBERS,
                        ["github.repository"] = REPOS }, counts)
      assert_db_clean()
    end)

    it("fails with a clear message for an unknown credential", function()
      local code, out, err = collect("0123456789abcdef0123456789abcdef")
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.matches("0123456789abcdef0123456789abcdef", err, 1, true)
    end)

    it("is used by `junction run` for an integration with a credential_id", function()
      local done, text = run_until({
        { id = "gh-vault", organization_id = "acme", provider = "github",
          credential_id = cred_id, interval_s = 3600,
          config = { organization = "acme", base_url = sim:url() } },
      }, { ["github.lua"] = read_file("connectors/github.lua") }, function(log)
        local last
        for _, l in ipairs(log) do
          if l.msg == "collection finished" and l.integration_id == "gh-vault" and l.status then
            last = l
          end
        end
        return last
      end, 15)
      assert.is_table(done, "the collection did not finish: " .. text)
      assert.are.equal("succeeded", done.status, done.error)
      assert.are.equal(1 + MEMBERS + REPOS, done.items)
      no_canary(text)
      assert_db_clean()
    end)
  end)

  describe("rotate", function()
    local function rotate(token, ...)
      return junction(nil, "creds", "rotate", "--org", "acme", "--id", cred_id, "--from-file",
        doc_file("new.json", token), ...)
    end

    it("tests a bad new token, discards it and keeps the current one", function()
      local code, out, err = rotate(CANARY_BAD, "--connector", "connectors/github.lua",
        "--config", config(), "--allow-host", "127.0.0.1")
      assert.are.equal(1, code)
      no_canary(out, err)
      local res = cjson.decode(out)
      assert.are.equal("discarded", res.outcome)
      assert.are.equal(2, res.version)
      assert.is_false(res.test.success)
      assert.matches("Bad credentials", res.test.message, 1, true)
      assert.are.same({ [1] = "current" }, states(list()[cred_id]))
      code, out, err = collect()
      assert.are.equal(0, code, err)
      no_canary(out, err)
    end)

    it("tests a good new token and promotes it", function()
      local code, out, err = rotate(CANARY_NEW, "--connector", "connectors/github.lua",
        "--config", config(), "--allow-host", "127.0.0.1")
      assert.are.equal(0, code, err)
      no_canary(out, err)
      local res = cjson.decode(out)
      assert.are.equal("promoted", res.outcome)
      assert.is_true(res.test.success)
      local c = list()[cred_id]
      assert.are.same({ [1] = "previous", [2] = "current" }, states(c))
      assert.are.equal("GitHub acme (read-only)", c.metadata.label)
      code, out, err = collect()
      assert.are.equal(0, code, err)
      no_canary(out, err)
      assert_db_clean()
    end)

    it("leaves an untested version pending unless --promote is given", function()
      local code, out, err = rotate(CANARY_BAD)
      assert.are.equal(0, code, err)
      assert.are.equal("pending", cjson.decode(out).outcome)
      assert.matches("pending", err, 1, true)
      assert.are.equal("pending", states(list()[cred_id])[3])
      -- a second rotation is refused while one is pending
      code = rotate(CANARY_BAD)
      assert.are.equal(2, code)
      code, out, err = junction(nil, "creds", "rotate", "--org", "acme", "--id", cred_id,
        "--discard")
      assert.are.equal(0, code, err)
      assert.are.equal("discarded", cjson.decode(out).outcome)
      assert.is_nil(states(list()[cred_id])[3])
      code, out, err = collect()
      assert.are.equal(0, code, err)
      no_canary(out, err)
    end)
  end)

  describe("keys rotate", function()
    it("re-wraps every data key under a newly appended master key", function()
      local f = assert(io.open(keyfile, "ab"))
      f:write(key_line("k2"))
      f:close()
      local code, out, err = junction(nil, "keys", "rotate")
      assert.are.equal(0, code, err)
      assert.matches("master key k2", out, 1, true)
      assert.matches("1 data key re-wrapped", out, 1, true)
      -- resumable / idempotent: nothing left to do
      code, out, err = junction(nil, "keys", "rotate")
      assert.are.equal(0, code, err)
      assert.matches("0 data keys re-wrapped", out, 1, true)
      -- the old key can go: every credential still decrypts with k2 alone
      local text = read_file(keyfile):gsub("k1 [^\n]*\n", "")
      write_file(keyfile, text)
      code, out, err = collect()
      assert.are.equal(0, code, err)
      no_canary(out, err)
    end)

    it("rotates an organization's data key and re-encrypts its credentials", function()
      local code, out, err = junction(nil, "keys", "rotate", "--org", "acme")
      assert.are.equal(0, code, err)
      assert.matches("organization acme: 2 credential versions re-encrypted", out, 1, true)
      for _, v in ipairs(list()[cred_id].versions) do assert.are.equal(2, v.dek_version) end
      code, out, err = collect()
      assert.are.equal(0, code, err)
      no_canary(out, err)
      assert_db_clean()
    end)
  end)

  describe("canary secrets on every path", function()
    local CANARY_HDR = "CANARYVAULTHDR-0123456789abcdefghij"
    local CANARY_EXTRA = "CANARYVAULTEXTRA-0123456789abcdefgh"
    local CANARY_QUERY = "CANARYVAULTQUERY-0123456789abcdefgh"
    -- Logs, emits and raises everything it can see: its whole ctx and config,
    -- the responses (body, headers, URL) of authenticated requests to a
    -- provider that echoes the request back, in a 200, a 400 and a 401; and
    -- reports whether any string reachable from its state holds a canary.
    local LEAKY = [==[
local c = connector {
  provider_type = "leaky", display_name = "Leaky", version = "1.0.0",
  description = "Shows everything it can see", auth_types = { "api_key" },
  capabilities = { "evidence_collection" }, egress = { "api.leaky.example" },
  rate_limits = { requests_per_second = 100, burst_size = 100 },
  documentation_url = "https://docs.leaky.example",
}
local function dump(v, seen)
  seen = seen or {}
  if type(v) ~= "table" then return tostring(v) end
  if seen[v] then return "<cycle>" end
  seen[v] = true
  local parts = {}
  for k, x in pairs(v) do parts[#parts + 1] = tostring(k) .. "=" .. dump(x, seen) end
  return "{" .. table.concat(parts, ",") .. "}"
end
local function holds(v, seen)
  if type(v) == "string" then return v:find("CANARY", 1, true) ~= nil end
  if type(v) ~= "table" or seen[v] then return false end
  seen[v] = true
  for k, x in pairs(v) do
    if holds(k, seen) or holds(x, seen) then return true end
  end
  local mt = getmetatable(v)
  return type(mt) == "table" and holds(mt, seen)
end
function c.test_connection(ctx) return { success = true } end
function c.collect_evidence(ctx, config)
  ctx.log.info("everything in ctx: " .. dump(ctx))
  ctx.log.info("everything in config: " .. dump(config))
  local responses = {}
  for i, path in ipairs({ "/echo?page=1", "/echo_status?code=400", "/echo_status?code=401" }) do
    local res = assert(ctx.http.get(config.base .. path))
    local json = res:json()
    responses[i] = { status = res.status, body = res.body, headers = res.headers, url = res.url,
                     json = json }
    ctx.log.warn("response " .. i .. ": " .. res.body .. " " .. dump(res.headers) .. " " .. res.url,
      { body = res.body, url = res.url, authorization = res.headers["x-echo-authorization"] })
    ctx.emit{ resource_type = "leaky.response", resource_id = tostring(i), data = responses[i] }
  end
  ctx.emit{ resource_type = "leaky.state", resource_id = "walk",
            data = { canary_reachable = holds({ ctx, config, _G, responses }, {}) } }
  if config.fail then
    error("leaking what I saw: " .. responses[2].body .. " " .. dump(responses[3].headers))
  end
end
return c
]==]
    local peer, leaky, hdr_id, query_id

    setup(function()
      peer = peer_mod.start("spec/helpers/paging_peer.js")
      leaky = dir .. "/leaky.lua"
      write_file(leaky, LEAKY)
      local function put(doc) return (vault:put("leaky", "api_key", doc, no_canary)) end
      -- a header token with an extra secret header, and a query-parameter token
      hdr_id = put({ token = CANARY_HDR, extra_headers = { ["X-App-Key"] = CANARY_EXTRA } })
      query_id = put({ token = CANARY_QUERY, query_param = "api_key" })
    end)

    teardown(function() if peer then peer:stop() end end)

    local function leaky_collect(id, fail)
      return vault:collect(leaky, { base = peer:url(), fail = fail or nil }, id)
    end

    -- The items of a successful run, by resource id.
    local function items(out)
      local by_id = {}
      for _, line in ipairs(lines(out)) do
        local item = cjson.decode(line)
        by_id[item.resource_id] = item.data
      end
      return by_id
    end

    -- A collection with credential id that succeeds, prints no canary and
    -- finds none reachable from the connector's state: its items by
    -- resource id, and its stderr.
    local function collected(id)
      local code, out, err = leaky_collect(id)
      assert.are.equal(0, code, err)
      no_canary(out, err)
      local got = items(out)
      assert.is_false(got.walk.canary_reachable)
      return got, err
    end

    it("use: echoed headers reach the connector redacted, never in its state, logs or evidence",
       function()
      local got, err = collected(hdr_id)
      for i = 1, 3 do
        local echoed = got[tostring(i)].json.headers
        -- the provider received both secrets: they come back, redacted
        assert.are.equal("Bearer [REDACTED]", echoed.authorization, "response " .. i)
        assert.are.equal("[REDACTED]", echoed["x-app-key"], "response " .. i)
      end
      assert.are.same({ 200, 400, 401 }, { got["1"].status, got["2"].status, got["3"].status })
      assert.are.equal("Bearer [REDACTED]", got["2"].headers["x-echo-authorization"])
      assert.matches("everything in ctx", err, 1, true)
      assert_db_clean()
    end)

    it("use: an echoed query-parameter token is redacted in the body, headers and URL", function()
      local got = collected(query_id)
      for i = 1, 3 do
        local r = got[tostring(i)]
        assert.are.equal("[REDACTED]", r.json.query.api_key, "response " .. i)
        assert.matches("api_key=[REDACTED]", r.url, 1, true)
        if i > 1 then assert.matches("api_key=[REDACTED]", r.json.url, 1, true) end
      end
      assert.matches("api_key=[REDACTED]", got["3"].headers["x-echo-url"], 1, true)
      assert_db_clean()
    end)

    it("failed auth and error(): the error a connector raises with what it saw is redacted",
       function()
      for _, id in ipairs({ hdr_id, query_id }) do
        local code, out, err = leaky_collect(id, true)
        assert.are_not.equal(0, code)
        no_canary(out, err)
        assert.matches("leaking what I saw", err, 1, true)
        assert.matches("[REDACTED]", err, 1, true)
      end
      -- a token the provider refuses (401): the failure names no secret
      local code, out, err = collect((vault:put("github", "api_key", { token = CANARY_BAD })))
      assert.are_not.equal(0, code)
      no_canary(out, err)
      assert.matches("401", out .. err, 1, true)
      assert_db_clean()
    end)

    it("job records, evidence, CLI output and logs of `junction run` hold no canary", function()
      local done, text = run_until({
        { id = "leaky-hdr", organization_id = "acme", provider = "leaky", credential_id = hdr_id,
          interval_s = 3600, config = { base = peer:url() } },
        { id = "leaky-query", organization_id = "acme", provider = "leaky",
          credential_id = query_id, interval_s = 3600, config = { base = peer:url() } },
        { id = "leaky-fail", organization_id = "acme", provider = "leaky",
          credential_id = hdr_id, interval_s = 3600, config = { base = peer:url(), fail = true } },
      }, { ["leaky.lua"] = LEAKY }, function(log)
        local by_id = {}
        for _, l in ipairs(log) do
          if l.msg == "collection finished" and l.status then by_id[l.integration_id] = l end
        end
        if by_id["leaky-hdr"] and by_id["leaky-query"] and by_id["leaky-fail"] then
          return by_id
        end
      end, 30)
      done = done or {}
      no_canary(text)
      assert.is_table(done["leaky-hdr"], "the collections did not finish: " .. text)
      assert.are.equal("succeeded", done["leaky-hdr"].status, done["leaky-hdr"].error)
      assert.are.equal("succeeded", done["leaky-query"].status, done["leaky-query"].error)
      -- it emitted, then raised: partial, with the raised error recorded
      assert.are.equal("partial", done["leaky-fail"].status)
      assert.matches("[REDACTED]", done["leaky-fail"].error, 1, true)
      -- the job rows themselves, and what the CLI shows of them
      local db = data .. "/junction.db"
      local rows = sh("sqlite3 " .. shell_quote(db) .. " " ..
        shell_quote("SELECT * FROM jobs WHERE integration_id LIKE 'leaky-%';") .. " 2>&1")
      assert.matches("leaky-fail", rows, 1, true)
      assert.matches("leaking what I saw", rows, 1, true)
      no_canary(rows)
      local code, out, err = junction(nil, "jobs", "list", "--format", "json", "--limit", "0")
      assert.are.equal(0, code, err)
      assert.matches("leaky-fail", out, 1, true)
      no_canary(out, err)
      for _, line in ipairs(lines(out)) do
        local j = cjson.decode(line)
        if tostring(j.integration_id):find("^leaky%-") then
          code, out, err = junction(nil, "jobs", "show", j.id)
          assert.are.equal(0, code, err)
          no_canary(out, err)
        end
      end
      code, out, err = junction(nil, "evidence", "export", "--integration", "leaky-hdr")
      assert.are.equal(0, code, err)
      assert.matches("leaky.response", out, 1, true)
      no_canary(out, err)
      assert_db_clean()
    end)
  end)

  describe("audit verify", function()
    it("passes and accounts for creation, access and rotation", function()
      local code, out, err = junction(nil, "audit", "verify")
      assert.are.equal(0, code, err)
      assert.matches("audit log intact: %d+ entries, last entry %d+ hash %x+", out)
      for _, action in ipairs({ "credential.create", "credential.access", "credential.rotate",
                                "credential.promote", "credential.discard",
                                "credential.delete", "connection.test",
                                "master_key.rotate" }) do
        assert.matches(action .. "=%d+", out)
      end
      local anchor = out:match("anchor[^\n]-: (%d+:%x+)")
      assert.is_not_nil(anchor)
      code, out, err = junction(nil, "audit", "verify", "--anchor", anchor)
      assert.are.equal(0, code, err)
      assert.matches("anchor matched", out, 1, true)
      code = junction(nil, "audit", "verify", "--anchor", "not-an-anchor")
      assert.are.equal(2, code)
    end)

    it("reports the first broken entry after tampering", function()
      local db = data .. "/junction.db"
      local sql = "DROP TRIGGER IF EXISTS audit_log_no_update; " ..
          "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3;"
      assert.are.equal("", sh("sqlite3 " .. shell_quote(db) .. " " .. shell_quote(sql) ..
        " 2>&1"))
      local code, out, err = junction(nil, "audit", "verify")
      assert.are.equal(1, code)
      assert.matches("tampered", out, 1, true)
      assert.matches("entry 3", err, 1, true)
    end)
  end)
end)
