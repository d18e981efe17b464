-- The GitHub connector against the provider simulator, run as real jobs
-- (real sandbox, ctx, HTTP client) through junction.testing.
local T = require "junction.testing"
local cjson = require "cjson"
local simulator = require "helpers.simulator"

local FILE = "connectors/github.lua"
local TOKEN = "sim-token"
-- A valid token that must never show up anywhere a person can read.
local CANARY = "ghp_CANARY0123456789abcdefghijklmnopqrstu"
local BAD_CANARY = "ghp_CANARYBAD456789abcdefghijklmnopqrstu"
local MEMBERS, REPOS = 2500, 1200

local EVIDENCE_FIELDS = {
  "id", "organization_id", "integration_id", "provider_type", "resource_type", "resource_id",
  "collected_at", "run_id", "connector_version", "checksum", "data",
}

local sim, truth

-- These specs test the connector's own handling of what GitHub answers, so the
-- core's traffic layer is told not to retry, not to trip and not to pace them
-- (spec/traffic_spec.lua tests that layer). A file of the operator's format:
local POLICY_FILE = os.tmpname()
do
  local f = assert(io.open(POLICY_FILE, "w"))
  f:write(cjson.encode({
    defaults = { retry = { max_attempts = 1 },
                 breaker = { consecutive_failures = 1000, min_requests = 1000000 } },
    providers = { github = { rate_limits = { requests_per_minute = 0,
                                             requests_per_hour = 1000000000 } } },
  }))
  f:close()
end
local RUNTIME = { traffic_file = POLICY_FILE }

local function config(extra)
  local cfg = { organization = "acme", base_url = sim:url() }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

-- One collect_evidence job; opts override the defaults.
local function collect(cfg, opts)
  local o = {
    file = FILE, entry = "collect_evidence", args = { cfg }, config = cfg,
    allow_hosts = { "127.0.0.1" }, token = TOKEN, timeout_ms = 120000,
  }
  for k, v in pairs(opts or {}) do
    if v == false then o[k] = nil else o[k] = v end
  end
  local started = T.now_ms()
  local result, logs, raw = T.run(o, RUNTIME)
  result.elapsed_ms = T.now_ms() - started
  return result, logs, raw
end

local function by_type(items)
  local out = {}
  for _, it in ipairs(items) do
    out[it.resource_type] = out[it.resource_type] or {}
    table.insert(out[it.resource_type], it)
  end
  return out
end

local function count(list, pred)
  local n = 0
  for _, v in ipairs(list or {}) do if pred(v) then n = n + 1 end end
  return n
end

local function find_log(logs, msg)
  for _, l in ipairs(logs) do
    if type(l) == "table" and l.msg == msg then return l end
  end
  return nil
end

local function pages(n, per_page)
  return math.max(1, math.ceil(n / per_page))
end

local function assert_failed(result, ...)
  assert.are.equal("failed", result.status, "expected the job to fail")
  for _, needle in ipairs({ ... }) do
    assert.is_truthy(result.error:find(needle, 1, true),
      "error should mention '" .. needle .. "': " .. tostring(result.error))
  end
end

setup(function()
  sim = simulator.start{ members = MEMBERS, repos = REPOS, tokens = { TOKEN, CANARY } }
  truth = sim:dataset().orgs[1]
end)

teardown(function()
  if sim then sim:stop() end
  os.remove(POLICY_FILE)
end)

before_each(function()
  sim:reset()
end)

describe("the GitHub connector", function()
  it("passes validation with its declared metadata", function()
    local ok, errors, meta = T.validate(FILE)
    assert.is_true(ok, errors)
    assert.are.equal("github", meta.provider_type)
    assert.are.equal("1.0.0", meta.version)
    assert.are.same({ "github_app", "oauth2", "api_key" }, meta.auth_types)
    assert.are.same({ "evidence_collection" }, meta.capabilities)
    assert.are.same({ "read:org", "repo" }, meta.required_scopes)
    assert.are.same({ "api.github.com" }, meta.egress)
    assert.are.same({ requests_per_minute = 900, requests_per_hour = 5000 }, meta.rate_limits)
    assert.are.equal("https://docs.github.com/rest", meta.documentation_url)
    assert.is_string(meta.display_name)
    assert.is_string(meta.description)
  end)

  describe("a full collection (" .. MEMBERS .. " members, " .. REPOS .. " repositories)", function()
    local result, logs, stats, items

    -- The run is shared by the tests below; its statistics are read before
    -- before_each resets them.
    local function run_once()
      if result then return end
      result, logs = collect(config())
      stats = sim:stats()
      items = by_type(result.items)
    end

    it("succeeds and emits one item per organization, member and repository", function()
      run_once()
      assert.are.equal("succeeded", result.status, result.error)
      assert.are.equal(1, #items["github.organization"])
      assert.are.equal(truth.members, #items["github.member"])
      assert.are.equal(truth.repos, #items["github.repository"])
      assert.are.equal(1 + truth.members + truth.repos, #result.items)
      assert.are.same({ organization = "acme", members = truth.members,
                        repositories = truth.repos, protection_unknown = 0 }, result.result)
      print(string.format("\n  github full collection: %d items, %d requests, %.0f ms wall, "
        .. "%.0f ms CPU, %.1f MiB peak Lua memory", #result.items, result.requests,
        result.elapsed_ms, result.cpu_ms, result.memory_peak / 1048576))
    end)

    it("gives every item all evidence fields, a sha256 checksum and a unique id", function()
      run_once()
      local ids, resources = {}, {}
      for _, it in ipairs(result.items) do
        for _, f in ipairs(EVIDENCE_FIELDS) do
          assert.is_not_nil(it[f], "item " .. tostring(it.resource_id) .. " lacks " .. f)
        end
        assert.are.equal("github", it.provider_type)
        assert.are.equal("1.0.0", it.connector_version)
        assert.matches("^%x+$", it.checksum)
        assert.are.equal(64, #it.checksum)
        assert.is_nil(ids[it.id], "duplicate id " .. it.id)
        ids[it.id] = true
        local key = it.resource_type .. "/" .. it.resource_id
        assert.is_nil(resources[key], "duplicate resource " .. key)
        resources[key] = true
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT", it.collected_at)
      end
    end)

    it("records the organization's security settings", function()
      run_once()
      local org = items["github.organization"][1]
      assert.are.equal("acme", org.resource_id)
      local _, real = sim:api("/orgs/acme")
      for _, k in ipairs({ "two_factor_requirement_enabled", "default_repository_permission",
                           "members_can_create_repositories",
                           "members_can_create_public_repositories",
                           "web_commit_signoff_required",
                           "advanced_security_enabled_for_new_repositories",
                           "dependabot_alerts_enabled_for_new_repositories",
                           "secret_scanning_enabled_for_new_repositories" }) do
        assert.are.equal(real[k], org.data[k], k)
      end
      assert.are.equal(real.plan.name, org.data.plan.name)
      assert.is_nil(org.data.billing_email) -- not a setting: not kept
    end)

    it("marks each member's role and 2FA status as GitHub reports them", function()
      run_once()
      local no_2fa, admins = {}, {}
      for _, m in ipairs(sim:api_list("/orgs/acme/members?filter=2fa_disabled")) do
        no_2fa[m.login] = true
      end
      for _, m in ipairs(sim:api_list("/orgs/acme/members?role=admin")) do
        admins[m.login] = true
      end
      for _, it in ipairs(items["github.member"]) do
        local d = it.data
        assert.are.equal(tostring(d.id), it.resource_id)
        assert.are.equal(not no_2fa[d.login], d.two_factor_enabled, d.login)
        assert.are.equal(d.two_factor_enabled and "enabled" or "disabled", d.two_factor_status)
        assert.are.equal(admins[d.login] and "admin" or "member", d.role, d.login)
        assert.are.equal("User", d.type)
        assert.is_false(d.site_admin)
      end
      assert.are.equal(truth.two_factor_disabled,
        count(items["github.member"], function(i) return i.data.two_factor_enabled == false end))
      assert.are.equal(truth.admins,
        count(items["github.member"], function(i) return i.data.role == "admin" end))
    end)

    it("summarizes default-branch protection, false for unprotected repositories", function()
      run_once()
      local repos = items["github.repository"]
      assert.are.equal(truth.protected_default_branches,
        count(repos, function(i) return i.data.protection_status == "protected" end))
      assert.are.equal(truth.repos - truth.protected_default_branches,
        count(repos, function(i) return i.data.default_branch_protection == false end))
      assert.are.equal(truth.archived, count(repos, function(i) return i.data.archived end))
      assert.are.equal(truth.private + truth.internal,
        count(repos, function(i) return i.data.private end))

      -- A sample compared field by field with what the API answers.
      local checked = { protected = 0, unprotected = 0 }
      for i = 1, #repos, 37 do
        local d = repos[i].data
        local status, p = sim:api("/repos/" .. d.full_name .. "/branches/" .. d.default_branch
          .. "/protection")
        if status == 404 then
          assert.is_false(d.default_branch_protection, d.full_name)
          assert.are.equal("unprotected", d.protection_status)
          checked.unprotected = checked.unprotected + 1
        else
          assert.are.equal(200, status)
          local s = d.default_branch_protection
          assert.are.equal("protected", d.protection_status)
          assert.are.equal(p.enforce_admins.enabled, s.enforce_admins, d.full_name)
          assert.are.equal(p.required_linear_history.enabled, s.required_linear_history)
          assert.are.equal(p.allow_force_pushes.enabled, s.allow_force_pushes)
          assert.are.equal(p.allow_deletions.enabled, s.allow_deletions)
          assert.are.equal(p.required_signatures.enabled, s.required_signatures)
          local r = p.required_pull_request_reviews
          if r then
            assert.are.equal(r.required_approving_review_count,
              s.required_pull_request_reviews.required_approving_review_count)
            assert.are.equal(r.dismiss_stale_reviews,
              s.required_pull_request_reviews.dismiss_stale_reviews)
            assert.are.equal(r.require_code_owner_reviews,
              s.required_pull_request_reviews.require_code_owner_reviews)
          else
            assert.is_false(s.required_pull_request_reviews)
          end
          local c = p.required_status_checks
          if c then
            assert.are.equal(c.strict, s.required_status_checks.strict)
            local want = {}
            for _, x in ipairs(c.contexts) do want[#want + 1] = x end
            table.sort(want)
            assert.are.same(want, s.required_status_checks.contexts)
          else
            assert.is_false(s.required_status_checks)
          end
          checked.protected = checked.protected + 1
        end
      end
      assert.is_true(checked.protected > 5 and checked.unprotected > 5)
    end)

    it("visits every page of every listing once, and nothing else", function()
      run_once()
      local per = 100
      local routes = stats.by_route
      assert.are.equal(1, routes["GET /orgs/{org}"])
      assert.are.equal(pages(truth.two_factor_disabled, per) + pages(truth.admins, per)
        + pages(truth.members, per), routes["GET /orgs/{org}/members"])
      assert.are.equal(pages(truth.repos, per), routes["GET /orgs/{org}/repos"])
      assert.are.equal(truth.repos,
        routes["GET /repos/{owner}/{repo}/branches/{branch}/protection"])
      assert.are.equal(result.requests, stats.total)
    end)

    it("keeps a checkpoint of the last complete run and logs counts per resource type", function()
      run_once()
      local cp = result.checkpoint
      assert.are.equal(truth.members, cp.members)
      assert.are.equal(truth.repos, cp.repositories)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d", cp.last_run_at)
      local m = find_log(logs, "members collected")
      assert.are.equal(truth.members, m.members)
      assert.are.equal(truth.admins, m.admins)
      assert.are.equal(truth.two_factor_disabled, m.without_2fa)
      assert.are.equal(truth.repos, find_log(logs, "repositories collected").repositories)
      assert.is_not_nil(find_log(logs, "organization settings collected"))
    end)
  end)

  it("pages with a small per_page and collects only the chosen resource types", function()
    local r = collect(config{ per_page = 7, resource_types = { "github.member" } })
    assert.are.equal("succeeded", r.status, r.error)
    local items = by_type(r.items)
    assert.is_nil(items["github.organization"])
    assert.is_nil(items["github.repository"])
    assert.are.equal(truth.members, #items["github.member"])
    local routes = sim:stats().by_route
    assert.are.equal(pages(truth.two_factor_disabled, 7) + pages(truth.admins, 7)
      + pages(truth.members, 7), routes["GET /orgs/{org}/members"])
    assert.is_nil(routes["GET /orgs/{org}/repos"])
    assert.are.equal(0, r.checkpoint.repositories)
  end)

  describe("credentials", function()
    it("works with the canary token and never shows it", function()
      local r, _, raw = collect(
        config{ resource_types = { "github.organization", "github.member" } }, { token = CANARY })
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(1 + truth.members, #r.items)
      assert.are.equal(sim:stats().by_token[CANARY], r.requests)
      assert.is_nil(raw:find("CANARY", 1, true))
      assert.is_nil(cjson.encode(r.items):find("CANARY", 1, true))
      assert.is_nil(cjson.encode(r.result):find("CANARY", 1, true))
    end)

    it("fails on a bad token with a clear 401 error that does not show the token", function()
      local r, logs, raw = collect(config(), { token = BAD_CANARY })
      assert_failed(r, "401", "Bad credentials", "/orgs/acme")
      assert.are.equal(0, #r.items)
      assert.are.equal(1, r.requests)
      assert.is_nil(r.error:find("CANARY", 1, true))
      assert.is_nil(raw:find("CANARY", 1, true))
      for _, l in ipairs(logs) do
        assert.is_nil(cjson.encode(l):find("CANARY", 1, true))
      end
    end)

    it("fails without any credential", function()
      local r = collect(config(), { token = false })
      assert_failed(r, "401")
    end)
  end)

  describe("test_connection", function()
    local function test(cfg, token)
      return T.run{ file = FILE, entry = "test_connection", config = cfg,
                    allow_hosts = { "127.0.0.1" }, token = token or TOKEN }
    end

    it("reports the organization, scopes and remaining budget", function()
      local r = test(config())
      assert.are.equal("succeeded", r.status, r.error)
      local res = r.result
      assert.is_true(res.success, res.message)
      assert.are.equal("acme", res.details.organization)
      assert.are.same({ "admin:org", "read:org", "repo" }, res.details.scopes)
      assert.is_number(res.details.rate_limit_remaining)
      assert.matches("acme", res.message)
      assert.are.equal(1, sim:stats().by_route["GET /orgs/{org}"])
    end)

    it("checks the user when no organization is configured", function()
      local r = test({ base_url = sim:url() })
      assert.is_true(r.result.success, r.result.message)
      assert.are.equal("sim-owner", r.result.details.login)
      assert.are.equal(1, sim:stats().by_route["GET /user"])
    end)

    it("reports bad credentials without throwing", function()
      local r, _, raw = test(config(), BAD_CANARY)
      assert.are.equal("succeeded", r.status, r.error)
      assert.is_false(r.result.success)
      assert.matches("Bad credentials", r.result.message, 1, true)
      assert.matches("401", r.result.message, 1, true)
      assert.is_nil(raw:find("CANARY", 1, true))
      assert.is_nil(cjson.encode(r.result):find("CANARY", 1, true))
    end)

    it("reports an unknown organization and an unreachable API", function()
      local r = test(config{ organization = "nope" })
      assert.is_false(r.result.success)
      assert.matches("404", r.result.message, 1, true)
      r = test(config{ base_url = "http://127.0.0.1:1" })
      assert.are.equal("succeeded", r.status, r.error)
      assert.is_false(r.result.success)
      assert.matches("could not reach GitHub", r.result.message, 1, true)
    end)

    it("reports a configuration error instead of throwing", function()
      local r = test(config{ organization = 42 })
      assert.are.equal("succeeded", r.status, r.error)
      assert.is_false(r.result.success)
      assert.matches("config.organization must be a string", r.result.message, 1, true)
    end)
  end)

  describe("rate limits", function()
    it("waits out a secondary rate limit (403 + retry-after) and succeeds", function()
      sim:fault{ path_prefix = "/orgs/acme/members", mode = "secondary_rate_limit", count = 2,
                 retry_after = 1 }
      local r, logs = collect(config{ resource_types = { "github.member" }, max_wait_s = 1 })
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(truth.members, #r.items)
      assert.are.equal(2, sim:stats().faults_injected.secondary_rate_limit)
      assert.is_true(r.elapsed_ms >= 1900, "should have slept about 2 s, took " .. r.elapsed_ms)
      local warn = find_log(logs, "GitHub rate limit: waiting before retrying")
      assert.are.equal("warn", warn.level)
      assert.are.equal(403, warn.status)
    end)

    it("waits out a 429 on a later page", function()
      sim:fault{ path_prefix = "/orgs/acme/repos", mode = "rate_limit_429", after = 3,
                 retry_after = 0 }
      local r = collect(config{ resource_types = { "github.repository" }, max_wait_s = 1 })
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(truth.repos, #r.items)
      assert.are.equal(1, sim:stats().faults_injected.rate_limit_429)
    end)

    it("waits for x-ratelimit-reset when the primary budget is spent", function()
      sim:rate_limit{ token = TOKEN, remaining = 0, reset_in_seconds = 1 }
      local r = collect(config{ resource_types = { "github.organization" }, max_wait_s = 3 })
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(1, #r.items)
      assert.is_true(r.elapsed_ms >= 900, "should have waited for the reset")
    end)

    it("gives up after 3 retries with an error naming the endpoint", function()
      sim:fault{ path_prefix = "/orgs/acme", mode = "secondary_rate_limit", count = -1,
                 retry_after = 0 }
      local r = collect(config{ max_wait_s = 0 })
      assert_failed(r, "GET /orgs/acme", "still rate limited", "3 retries", "403")
      assert.are.equal(4, sim:stats().by_route["GET /orgs/{org}"])
    end)
  end)

  describe("partial failures", function()
    it("records repositories whose protection GitHub would not report as unknown", function()
      sim:fault{ path_prefix = "/repos/acme/", mode = "server_error", count = 5 }
      sim:fault{ path_prefix = "/repos/acme/", mode = "server_error", status = 403, after = 100,
                 count = 2 }
      local r, logs = collect(config{ resource_types = { "github.repository" } })
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(truth.repos, #r.items)
      local unknown, by_status = 0, {}
      for _, it in ipairs(r.items) do
        if it.data.protection_status == "unknown" then
          unknown = unknown + 1
          assert.are.equal(cjson.null, it.data.default_branch_protection)
          assert.matches("/protection: HTTP", it.data.protection_error, 1, true)
          by_status[it.data.protection_http_status] = (by_status[it.data.protection_http_status]
            or 0) + 1
        end
      end
      assert.are.equal(7, unknown)
      assert.are.same({ [502] = 5, [403] = 2 }, by_status)
      assert.are.equal(7, r.result.protection_unknown)
      local warn = find_log(logs, "default-branch protection unknown; the repository is "
        .. "recorded without it")
      assert.are.equal("warn", warn.level)
    end)

    it("records a 404 other than \"Branch not protected\" as unknown, not unprotected", function()
      local _, some = sim:api("/orgs/acme/repos?per_page=1&page=20")
      local hidden = some[1].full_name
      sim:fault{ path_prefix = "/repos/" .. hidden .. "/", mode = "server_error", status = 404 }
      local r = collect(config{ resource_types = { "github.repository" } })
      assert.are.equal("succeeded", r.status, r.error)
      local status, body = sim:request("GET", "/_sim/faults") -- the fault was used
      assert.are.equal(200, status)
      assert.are.same({}, cjson.decode(body).faults)
      for _, it in ipairs(r.items) do
        if it.data.full_name == hidden then
          assert.are.equal("unknown", it.data.protection_status)
          assert.are.equal(404, it.data.protection_http_status)
          assert.matches("admin access", it.data.protection_error, 1, true)
        else
          assert.are_not.equal("unknown", it.data.protection_status)
        end
      end
    end)

    it("records protection as unknown when the connection is reset", function()
      -- every attempt for one repository: the client retries a reused connection
      local _, some = sim:api("/orgs/acme/repos?per_page=1&page=10")
      sim:fault{ path_prefix = "/repos/" .. some[1].full_name .. "/", mode = "reset",
                 count = -1 }
      local r = collect(config{ resource_types = { "github.repository" } })
      assert.are.equal("succeeded", r.status, r.error)
      local unknown = {}
      for _, it in ipairs(r.items) do
        if it.data.protection_status == "unknown" then unknown[#unknown + 1] = it.data end
      end
      assert.are.equal(1, #unknown)
      assert.are.equal(some[1].full_name, unknown[1].full_name)
      assert.are.equal(0, unknown[1].protection_http_status)
      assert.matches("^GET /repos/", unknown[1].protection_error)
    end)

    for _, status in ipairs({ 403, 422 }) do
      it("records 2FA as unknown when the 2fa_disabled listing answers " .. status, function()
        sim:fault{ path_prefix = "/orgs/acme/members", query = { filter = "2fa_disabled" },
                   mode = "server_error", status = status, count = 1 }
        local r, logs = collect(config{ resource_types = { "github.member" } })
        assert.are.equal("succeeded", r.status, r.error)
        assert.are.equal(truth.members, #r.items)
        for _, it in ipairs(r.items) do
          assert.are.equal(cjson.null, it.data.two_factor_enabled)
          assert.are.equal("unknown", it.data.two_factor_status)
        end
        assert.are.equal(truth.admins,
          count(r.items, function(i) return i.data.role == "admin" end))
        local warn = find_log(logs, "GitHub did not list members without 2FA (only organization "
          .. "owners may): two_factor_enabled is recorded as unknown")
        assert.are.equal(status, warn.status)
        assert.are.equal("unknown", find_log(logs, "members collected").without_2fa)
      end)
    end
  end)

  describe("broken responses fail the job with a clear error", function()
    it("bad JSON on a later page", function()
      sim:fault{ path_prefix = "/orgs/acme/members", mode = "bad_json", after = 5 }
      local r = collect(config())
      assert_failed(r, "/members", "not valid JSON")
    end)

    it("a truncated body", function()
      sim:fault{ path_prefix = "/orgs/acme/repos", mode = "truncated" }
      local r = collect(config{ resource_types = { "github.repository" } })
      assert_failed(r, "GET /orgs/acme/repos")
    end)

    it("a body over the runtime's response cap", function()
      sim:fault{ path_prefix = "/orgs/acme/members", mode = "huge", bytes = 40 * 1048576 }
      local r = collect(config{ resource_types = { "github.member" } })
      assert_failed(r, "GET /orgs/acme/members: response body over 33554432 bytes")
    end)

    it("a body the job's memory limit cannot hold", function()
      sim:fault{ path_prefix = "/orgs/acme/members", mode = "huge", bytes = 12 * 1048576 }
      local r = collect(config{ resource_types = { "github.member" } }, { memory_mb = 16 })
      -- refused before decoding: the document could not fit in what is left of 16 MiB
      assert_failed(r, "GET /orgs/acme/members", "too large to decode within the job's memory limit")
    end)

    it("a response slower than the job's deadline", function()
      sim:fault{ path_prefix = "/orgs/acme", mode = "slow", interval_ms = 200 }
      local r = collect(config(), { timeout_ms = 1500 })
      assert_failed(r, "timed out")
    end)

    it("a reset connection", function()
      sim:fault{ path_prefix = "/orgs/acme", mode = "reset" }
      local r = collect(config())
      assert_failed(r, "GET /orgs/acme")
    end)

    it("a 5xx on a listing page", function()
      sim:fault{ path_prefix = "/orgs/acme/members", mode = "server_error", after = 4 }
      local r = collect(config{ resource_types = { "github.member" } })
      assert_failed(r, "/members", "HTTP 502", "Server Error")
    end)
  end)

  describe("ctx.paginate's request option (the connector's retrying GET)", function()
    local function script(source)
      return T.run{ source = source:gsub("URL", sim:url("/orgs/acme/members")),
                    allow_hosts = { "127.0.0.1" }, token = TOKEN }
    end

    it("performs every page's GET through the given function", function()
      local r = script([[
        local ctx = ...
        local calls, n = 0, 0
        for items in ctx.paginate{ url = "URL", query = { per_page = 100 },
            request = function(u, o) calls = calls + 1; return ctx.http.get(u, o) end } do
          n = n + #items
        end
        return { calls = calls, n = n }
      ]])
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.same({ calls = pages(truth.members, 100), n = truth.members }, r.result)
    end)

    it("raises the function's error, and rejects a request that is not a function", function()
      local r = script([[
        local ctx = ...
        for _ in ctx.paginate{ url = "URL", request = function() return nil, "no luck" end } do end
      ]])
      assert_failed(r, "no luck")
      r = script([[
        local ctx = ...
        for _ in ctx.paginate{ url = "URL", request = 5 } do end
      ]])
      assert_failed(r, "'request' must be a function")
    end)
  end)

  describe("configuration", function()
    local cases = {
      { "missing organization", { base_url = "http://127.0.0.1:1" },
        "config.organization is required" },
      { "a non-string organization", { organization = 7 },
        "config.organization must be a string" },
      { "an organization that is not a login", { organization = "acme/../x" },
        "is not a GitHub organization login" },
      { "a per_page over 100", { per_page = 500 }, "config.per_page must be a whole number" },
      { "an unknown resource type", { resource_types = { "github.team" } },
        "unknown resource type 'github.team'" },
      { "a base_url that is not a URL", { base_url = "api.github.com" },
        "config.base_url must be an http(s) URL" },
      { "a negative max_wait_s", { max_wait_s = -1 }, "config.max_wait_s" },
    }
    for _, case in ipairs(cases) do
      it("rejects " .. case[1] .. " before any request", function()
        local cfg = case[1] == "missing organization" and case[2] or config(case[2])
        local r = collect(cfg)
        assert_failed(r, case[3])
        assert.are.equal(0, r.requests)
      end)
    end

    it("refuses a base_url outside the connector's egress list", function()
      local r = collect(config{ base_url = "https://github.example.invalid/api/v3" })
      assert_failed(r, "egress denied", "github.example.invalid")
    end)
  end)
end)
