-- AWS STS AssumeRole (auth type aws_assume_role) and private_key_jwt end to
-- end against the simulator, through testing.run and through the binary
-- (`junction creds put`, then `junction collect --credential`).
--
-- The simulator's STS verifies the SigV4 signature of the AssumeRole call with
-- the base keys and checks the role's ExternalId; its /aws/iam/users route
-- only opens to a request signed with the temporary keys and carrying their
-- session token, so a passing collection proves the whole chain. Canary
-- secrets (the base secret key and session token, the temporary secret key and
-- session token, which the simulator marks SIMTEMPSECRET and SIMSESSIONTOKEN)
-- must appear in no result, log, error, evidence item, database file or Lua
-- value. ctest sets JUNCTION_BIN.
local T = require "junction.testing"
local cjson = require "cjson"
local simulator = require "helpers.simulator"
local tokens = require "helpers.tokens"
local util = require "helpers.util"

local write_file, lines = util.write_file, util.lines

local BASE_ID = "AKIASPECBASE00000001"
local BASE_SECRET = "CANARYAWSBASESECRET/0123+abcdefghijklmnop"
local BASE_TOKEN = "CANARYAWSBASETOKEN+session/0123456789=="
local ROLE = "arn:aws:iam::111122223333:role/JunctionAudit"
local EXTERNAL_ID = "acme-7f3c2b1e:tenant/42"
local CLIENT_ID = "junction-spec-pkjwt"
local KEY_ID = "spec-key-2026"
local JOBS = 20

-- The secrets that must never show, as Lua patterns (plain finds).
local CANARIES = { "CANARYAWS", "SIMTEMPSECRET", "SIMSESSIONTOKEN", "PRIVATE KEY", "sim_cc_" }

-- A connector for the simulator's AWS route: one evidence item per IAM user.
local CONNECTOR = [[
local c = connector {
  provider_type = "aws_iam_spec",
  display_name = "AWS IAM (spec)",
  description = "IAM users of the account, through an assumed role (spec connector).",
  version = "0.1.0",
  auth_types = { "aws_assume_role" },
  capabilities = { "evidence_collection" },
  rate_limits = { requests_per_second = 10, burst_size = 20 },
  egress = { "iam.amazonaws.com", "sts.us-east-1.amazonaws.com" },
  documentation_url = "https://docs.aws.amazon.com/IAM/latest/APIReference/",
}

function c.test_connection(ctx)
  return { success = true, message = "ok", details = {} }
end

function c.collect_evidence(ctx, config)
  local res, err = ctx.http.get(config.base_url .. "/aws/iam/users")
  if not res then error(err) end
  if res.status ~= 200 then error("ListUsers: HTTP " .. res.status) end
  local body = res:json()
  for _, u in ipairs(body.Users) do
    ctx.emit{ resource_type = "aws.iam.user", resource_id = u.UserName,
              data = { arn = u.Arn, created = u.CreateDate, caller = body.Caller } }
  end
end

return c
]]

-- Script jobs: `n` calls to URL, then a search of everything the script can
-- reach (its globals, ctx, the responses, the errors) for the canaries.
local SCRIPT = [[
local ctx = ...
local CANARIES = { "CANARYAWS", "SIMTEMPSECRET", "SIMSESSIONTOKEN" }
local function leaks(v, seen)
  if type(v) == "string" then
    for _, c in ipairs(CANARIES) do
      if v:find(c, 1, true) then return true end
    end
    return false
  end
  if type(v) ~= "table" or seen[v] then return false end
  seen[v] = true
  for k, x in pairs(v) do
    if leaks(k, seen) or leaks(x, seen) then return true end
  end
  return false
end
local kept, codes, errors, callers = {}, {}, {}, {}
local function call()
  local res, err = ctx.http.get("URL")
  kept[#kept + 1] = res or err
  if not res then
    errors[#errors + 1] = err
    codes[#codes + 1] = 0
    return
  end
  codes[#codes + 1] = res.status
  if res.status == 200 then callers[res:json().Caller] = true end
end
STEPS
local caller_list = {}
for k in pairs(callers) do caller_list[#caller_list + 1] = k end
return { codes = codes, errors = errors, callers = caller_list,
         leaked = leaks({ _G, ctx, kept, errors }, {}) }
]]

describe("aws_assume_role and private_key_jwt", function()
  local sim, short, vault, dir, connector_file
  local client_key -- PEM private key
  local key_marks = {}

  local function no_secrets(...)
    for _, text in ipairs({ ... }) do
      for _, c in ipairs(CANARIES) do
        assert.is_nil(text:find(c, 1, true), "a secret leaked: " .. c)
      end
      for _, mark in ipairs(key_marks) do
        assert.is_nil(text:find(mark, 1, true), "a private key leaked")
      end
    end
  end

  local function role_doc(s, extra)
    local doc = { access_key_id = BASE_ID, secret_access_key = BASE_SECRET,
                  session_token = s == sim and BASE_TOKEN or nil, role_arn = ROLE,
                  external_id = EXTERNAL_ID, session_name = "junction-spec",
                  duration_seconds = 900, region = "us-east-1", service = "iam",
                  sts_endpoint = s:url("/sts/") }
    for k, v in pairs(extra or {}) do
      if v == false then doc[k] = nil else doc[k] = v end
    end
    return cjson.encode(doc)
  end

  -- A script job on simulator s; steps: Lua statements using call() and ctx.
  local function script_job(s, steps, doc)
    return {
      source = (SCRIPT:gsub("STEPS", function() return steps end)
                      :gsub("URL", function() return s:url("/aws/iam/users") end)),
      allow_hosts = { "127.0.0.1" }, credential = doc or role_doc(s),
      credential_type = "aws_assume_role", timeout_ms = 60000,
    }
  end

  local function counts(s)
    local st = s:stats()
    return st.exchanges, st.aws
  end

  setup(function()
    vault = tokens.vault()
    dir = vault.dir
    connector_file = dir .. "/aws_iam_spec.lua"
    write_file(connector_file, CONNECTOR, "644")
    local pub, mark
    client_key, pub, mark = util.genkey(dir, "client")
    key_marks[#key_marks + 1] = mark
    sim = simulator.start{ members = 5, repos = 20, args = {
      "--sts-access-key-id", BASE_ID, "--sts-secret-access-key", BASE_SECRET,
      "--sts-session-token", BASE_TOKEN, "--sts-role-arn", ROLE, "--sts-external-id", EXTERNAL_ID,
      "--client-id", CLIENT_ID, "--client-key-file", pub, "--client-key-id", KEY_ID } }
    -- Temporary keys that live 6 seconds, without a base session token.
    short = simulator.start{ members = 5, repos = 5, args = {
      "--sts-access-key-id", BASE_ID, "--sts-secret-access-key", BASE_SECRET,
      "--sts-role-arn", ROLE, "--sts-external-id", EXTERNAL_ID, "--sts-credential-ttl", "6" } }
  end)

  teardown(function() tokens.stop(sim, short, vault) end)

  before_each(function()
    sim:reset()
    short:reset()
  end)

  describe("aws_assume_role through testing.run", function()
    it("collects through the connector with temporary keys from one AssumeRole", function()
      local cfg = { base_url = sim:url() }
      local r, logs, raw = T.run{ file = connector_file, entry = "collect_evidence",
        args = { cfg }, config = cfg, allow_hosts = { "127.0.0.1" },
        credential = role_doc(sim), credential_type = "aws_assume_role" }
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(3, r.item_count)
      local names = {}
      for _, item in ipairs(r.items) do
        names[#names + 1] = item.resource_id
        assert.are.equal("aws.iam.user", item.resource_type)
        assert.are.equal("arn:aws:sts::111122223333:assumed-role/JunctionAudit/junction-spec",
          item.data.caller)
      end
      assert.are.same({ "alice", "bob", "ci-deploy" }, names)
      local ex, aws = counts(sim)
      assert.are.equal(1, ex.assume_role)
      assert.are.equal(0, ex.assume_role_refused)
      assert.are.equal(1, aws.api_calls)
      assert.are.equal(0, aws.api_refused)
      -- The AssumeRole call carried the credential's parameters.
      assert.are.same({ role_arn = ROLE, session_name = "junction-spec", duration_seconds = 900,
                        external_id_sent = true }, aws.last_assume_role)
      no_secrets(raw, cjson.encode(r.items), cjson.encode(logs))
    end)

    it("serves many concurrent requests with one AssumeRole, and no secret reaches Lua", function()
      local list = {}
      for i = 1, JOBS do list[i] = script_job(sim, "call() call() call()") end
      local results, logs, raw = T.run(list)
      for _, r in ipairs(results) do
        assert.are.equal("succeeded", r.status, r.error)
        assert.are.same({ 200, 200, 200 }, r.result.codes)
        assert.is_false(r.result.leaked)
        no_secrets(cjson.encode(r.result))
      end
      local ex, aws = counts(sim)
      assert.are.equal(1, ex.assume_role)
      assert.are.equal(3 * JOBS, aws.api_calls)
      assert.are.equal(0, aws.api_refused)
      no_secrets(raw, cjson.encode(logs))
    end)

    it("renews expired temporary keys exactly once for many concurrent requests", function()
      -- The keys live 6 s: each job calls, sleeps past their Expiration, then
      -- calls twice more. The simulator answers ExpiredToken to old keys, so
      -- every 200 after the sleep proves the renewed keys were used; the
      -- renewed keys are fresh for the third call (renewal is due only half
      -- way through their life).
      local list = {}
      for i = 1, JOBS do list[i] = script_job(short, "call() ctx.sleep(6.5) call() call()") end
      local results, logs, raw = T.run(list)
      for _, r in ipairs(results) do
        assert.are.equal("succeeded", r.status, r.error)
        assert.are.same({ 200, 200, 200 }, r.result.codes)
        assert.is_false(r.result.leaked)
      end
      local ex, aws = counts(short)
      assert.are.equal(2, ex.assume_role)
      assert.are.equal(3 * JOBS, aws.api_calls)
      assert.are.equal(0, aws.api_refused)
      no_secrets(raw, cjson.encode(logs))
    end)

    it("assumes the role again when AWS refuses the session, without retrying", function()
      local steps = ([[
        call()
        assert(ctx.http.post("REVOKE", { auth = false }))
        call() call()]]):gsub("REVOKE", sim:url("/_sim/revoke_exchanged"))
      local r = T.run(script_job(sim, steps))
      assert.are.equal("succeeded", r.status, r.error)
      -- 403 InvalidClientTokenId drops the cached keys; the next call assumes the role again.
      assert.are.same({ 200, 403, 200 }, r.result.codes)
      local ex, aws = counts(sim)
      assert.are.equal(2, ex.assume_role)
      assert.are.equal(1, aws.refusals.InvalidClientTokenId)
    end)

    it("reports a wrong ExternalId precisely, without secrets, and backs off", function()
      local doc = role_doc(sim, { external_id = "acme-wrong-id" })
      local r, logs, raw = T.run(script_job(sim, "call() call() call() call()", doc))
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.same({ 0, 0, 0, 0 }, r.result.codes)
      assert.is_false(r.result.leaked)
      local err = r.result.errors[1]
      assert.matches("aws_assume_role token exchange failed: POST " .. sim:url("/sts/"), err, 1, true)
      assert.matches("HTTP 403 AccessDenied (User: arn:aws:iam::999988887777:user/junction-sim " ..
        "is not authorized to perform: sts:AssumeRole on resource: " .. ROLE .. ")", err, 1, true)
      assert.matches("role " .. ROLE .. " cannot be assumed with these base keys", err, 1, true)
      assert.matches("external_id matches its sts:ExternalId condition", err, 1, true)
      assert.is_nil(err:find("acme-wrong-id", 1, true), "the external id is not repeated")
      -- Three refusals in a row: the fourth call fails fast, without calling STS.
      assert.matches("3 AssumeRole calls in a row failed; STS is not called again for",
        r.result.errors[4], 1, true)
      assert.matches("last error: HTTP 403 AccessDenied", r.result.errors[4], 1, true)
      local ex = counts(sim)
      assert.are.equal(0, ex.assume_role)
      assert.are.equal(3, ex.assume_role_refused)
      no_secrets(raw, cjson.encode(r.result), cjson.encode(logs))
    end)

    it("reports a signature STS refuses (wrong base secret)", function()
      local r = T.run(script_job(sim, "call()",
        role_doc(sim, { secret_access_key = "CANARYAWSWRONGSECRET" })))
      assert.are.equal("succeeded", r.status, r.error)
      assert.matches("HTTP 403 SignatureDoesNotMatch (The request signature we calculated",
        r.result.errors[1], 1, true)
      no_secrets(cjson.encode(r.result))
    end)

    it("refuses an STS endpoint outside the egress list", function()
      local doc = role_doc(sim, { sts_endpoint = sim:url("/sts/"):gsub("127%.0%.0%.1", "localhost") })
      local r = T.run(script_job(sim, "call()", doc))
      assert.are.equal("succeeded", r.status, r.error)
      assert.matches("aws_assume_role token exchange: host 'localhost' is not in the " ..
        "connector's egress list", r.result.errors[1], 1, true)
      local ex = counts(sim)
      assert.are.equal(0, ex.assume_role + ex.assume_role_refused)
    end)

    it("rejects an invalid document without echoing secrets", function()
      local ok, err = pcall(T.run, script_job(sim, "call()",
        role_doc(sim, { role_arn = "arn:aws:iam::1111:role/x" })))
      assert.is_false(ok)
      assert.matches("aws_assume_role credential: field 'role_arn' must be an IAM role ARN", err,
        1, true)
      no_secrets(err)
      ok, err = pcall(T.run, script_job(sim, "call()", role_doc(sim, { duration_seconds = 60 })))
      assert.is_false(ok)
      assert.matches("field 'duration_seconds' must be an integer from 900 to 43200", err, 1, true)
    end)
  end)

  describe("private_key_jwt through testing.run", function()
    local function pk_doc(extra)
      local doc = { client_id = CLIENT_ID, private_key = client_key,
                    token_url = sim:url("/oauth/token"), key_id = KEY_ID, scope = "read:org" }
      for k, v in pairs(extra or {}) do doc[k] = v end
      return cjson.encode(doc)
    end

    local function user_job(doc)
      return { source = ([[ local ctx = ...
                 local res, err = ctx.http.get("URL")
                 if not res then return { error = err } end
                 return { status = res.status, login = res:json().login } ]]):gsub("URL",
                 sim:url("/user")),
               allow_hosts = { "127.0.0.1" }, credential = doc,
               credential_type = "private_key_jwt" }
    end

    it("obtains a token with an assertion naming its key_id", function()
      local r, logs, raw = T.run(user_job(pk_doc()))
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(200, r.result.status)
      assert.is_string(r.result.login)
      assert.are.equal(1, sim:stats().exchanges.client_credentials)
      no_secrets(raw, cjson.encode(r.result), cjson.encode(logs))
    end)

    it("is refused when the key_id is not the registered one", function()
      local r = T.run(user_job(pk_doc{ key_id = "other-key" }))
      assert.are.equal("succeeded", r.status, r.error)
      assert.matches("private_key_jwt token exchange failed: POST " .. sim:url("/oauth/token") ..
        ": HTTP 401 (Client assertion kid does not name a registered key)", r.result.error, 1, true)
      no_secrets(cjson.encode(r.result))
    end)
  end)

  describe("through the binary (creds put, collect --credential)", function()
    local function junction(...) return vault.cli(...) end

    local function put(provider, auth_type, doc)
      return (vault:put(provider, auth_type, doc, no_secrets))
    end

    local function no_secrets_stored() no_secrets(vault:stored()) end

    it("stores an aws_assume_role credential and collects with it", function()
      local id = put("aws_iam_spec", "aws_assume_role", role_doc(sim))
      local code, out, err = vault:collect(connector_file, { base_url = sim:url() }, id)
      assert.are.equal(0, code, err)
      local items = lines(out)
      assert.are.equal(3, #items)
      assert.are.equal("alice", cjson.decode(items[1]).resource_id)
      local ex, aws = counts(sim)
      assert.are.equal(1, ex.assume_role)
      assert.are.equal(1, aws.api_calls)
      no_secrets(out, err)
      no_secrets_stored()
    end)

    it("fails a collection whose ExternalId the role refuses, with the reason", function()
      local id = put("aws_iam_spec", "aws_assume_role",
        role_doc(sim, { external_id = false }))
      local code, out, err = vault:collect(connector_file, { base_url = sim:url() }, id)
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("AccessDenied", err, 1, true)
      assert.matches("cannot be assumed with these base keys", err, 1, true)
      assert.are.equal(1, (counts(sim)).assume_role_refused)
      no_secrets(out, err)
      no_secrets_stored()
    end)

    it("refuses an invalid aws_assume_role document at creds put", function()
      local path = dir .. "/bad.json"
      write_file(path, role_doc(sim, { external_id = "x" }))
      local code, out, err = junction("creds", "put", "--org", "acme", "--provider",
        "aws_iam_spec", "--auth-type", "aws_assume_role", "--from-file", path)
      assert.are.equal(2, code)
      assert.matches("field 'external_id' must be 2 to 1224 characters", err, 1, true)
      no_secrets(out, err)
    end)

    it("stores a private_key_jwt credential and collects GitHub with it", function()
      local id = put("github", "private_key_jwt", cjson.encode({ client_id = CLIENT_ID,
        private_key = client_key, token_url = sim:url("/oauth/token"), key_id = KEY_ID }))
      local code, out, err = vault:collect("connectors/github.lua",
        { organization = "acme", base_url = sim:url() }, id)
      assert.are.equal(0, code, err)
      assert.is_true(#lines(out) > 20)
      assert.are.equal(1, sim:stats().exchanges.client_credentials)
      no_secrets(out, err)
      no_secrets_stored()
    end)
  end)
end)
