-- Integration health end to end: `junction run` against the provider
-- simulator, read through GET /v1/health, GET /v1/integrations/{id}/health,
-- `junction health` and /metrics.
--  * collections succeed: the integration is healthy, with requests,
--    latency and its last sync;
--  * the simulator's fault injection fails every request: the integration
--    turns unhealthy (API and `junction health`), with its recent errors;
--  * the fault cleared and successes accumulating, it recovers to healthy;
--  * an integration that never ran is "unknown";
--  * an organization token sees only its own organization's integrations;
--  * /metrics passes `promtool check metrics` and holds the new families;
--  * the provider token (a canary) appears in no health answer, no metric,
--    no `junction health` output and no log line.
-- A short health window (health_bucket_ms = 100: 60 buckets make 6 s) and no
-- hold let the spec see failure and recovery in seconds.
local cjson = require "cjson"
local runtime = require "helpers.runtime"
local simulator = require "helpers.simulator"
local util = require "helpers.util"
local shell_quote, sh = util.shell_quote, util.sh

local CANARY = "CANARY-HEALTH-simtoken-7c2d91"
local ADMIN = "CANARY-HEALTH-admin-0b9e8f7a6d5c4b3a2910"

-- Every answer is checked for the canaries.
local http = util.clean_get

local item_of = util.health_item

describe("integration health", function()
  local sim, rt, port, org_token

  setup(function()
    assert(sh("command -v promtool"):match("promtool"),
      "promtool is needed (Debian package prometheus; tools/install-deps)")
    sim = simulator.start{ members = 30, repos = 10, tokens = { CANARY } }
    rt = runtime.new{
      connectors = { "github.lua" },
      env = { SIM_TOKEN = CANARY },
      conf = {
        "allow_hosts = 127.0.0.1",
        "integrations_file = INTEGRATIONS",
        "traffic_file = TRAFFIC",
        "api_admin_token_file = ADMIN_FILE",
        "http_server_rate_per_s = 0",
        "queue_max_attempts = 1",
        "health_bucket_ms = 100",
        "health_min_requests = 3",
        "health_hold_s = 0",
        "metrics_org_labels = acme-org",
      },
    }
    util.write_file(rt.dir .. "/integrations.json", cjson.encode({
      { id = "gh-health", organization_id = "acme-org", provider = "github",
        token_env = "SIM_TOKEN", interval_s = 1,
        config = { organization = "acme", base_url = sim:url() } },
      { id = "gh-never", organization_id = "acme-org", provider = "github",
        token_env = "SIM_TOKEN", interval_s = 3600, enabled = false,
        config = { organization = "acme", base_url = sim:url() } },
      { id = "gh-other", organization_id = "other-org", provider = "github",
        token_env = "SIM_TOKEN", interval_s = 3600, enabled = false,
        config = { organization = "acme", base_url = sim:url() } },
    }))
    -- a breaker that reopens quickly, so that recovery takes seconds
    util.write_file(rt.dir .. "/traffic.json", cjson.encode({
      defaults = { breaker = { open_ms = 500, open_max_ms = 1000 } },
    }))
    util.write_file(rt.dir .. "/admin", ADMIN .. "\n")
    os.execute("chmod 600 " .. shell_quote(rt.dir .. "/admin"))
    local conf = util.read_file(rt.conf)
        :gsub("INTEGRATIONS", rt.dir .. "/integrations.json")
        :gsub("TRAFFIC", rt.dir .. "/traffic.json")
        :gsub("ADMIN_FILE", rt.dir .. "/admin")
    util.write_file(rt.conf, conf)
    local code, out, err = rt:cli("tokens", "create", "--org", "acme-org", "--scope", "read")
    assert.are.equal(0, code, err)
    org_token = cjson.decode(out).token
    util.write_file(rt.dir .. "/org.token", org_token .. "\n")
    os.execute("chmod 600 " .. shell_quote(rt.dir .. "/org.token"))
    rt:start()
    port = rt:api_port(30)
  end)

  teardown(function()
    if rt then
      rt:stop()
      rt:log_free_of("CANARY", org_token)
    end
    if sim then sim:stop() end
    if rt then rt:cleanup() end
  end)

  local health, wait_status = util.health_reader(function() return port end, ADMIN, runtime.wait)

  -- `junction health ...` against the running API
  local function cli_health(...)
    local code, out, err = rt:cli("health", "--url", "http://127.0.0.1:" .. port, ...)
    assert.is_nil((out .. err):find("CANARY", 1, true), "a secret in junction health")
    return code, out, err
  end

  it("reports healthy, then unhealthy under faults, then healthy again", function()
    local it = wait_status("gh-health", "healthy", 30)
    assert(it, "never healthy: " .. cjson.encode(health()) .. util.read_file(rt.log))
    assert.are.equal("acme-org", it.organization_id)
    assert.are.equal("github", it.provider)
    assert.is_true(it.enabled)
    assert.is_true(it.requests_1h > 0)
    assert.is_string(it.last_success)
    assert.is_number(it.avg_latency_ms)
    assert.are.equal("closed", it.breaker)
    assert.are.equal("ok", it.rate_limit.state)
    assert(runtime.wait(function()
      local x = item_of(health(), "gh-health")
      return x.last_sync ~= cjson.null and x.last_sync.job_id
    end, 20), "no last sync")

    -- never run: unknown, with nulls where there is nothing to say
    local never = item_of(health(), "gh-never")
    assert.are.equal("unknown", never.status)
    assert.is_false(never.enabled)
    assert.are.equal(cjson.null, never.last_check)
    assert.are.equal(cjson.null, never.success_rate_1h)
    assert.are.equal(0, never.requests_1h)
    -- breakers are per (provider, organization): gh-never shares gh-health's lane
    assert.are.equal("closed", never.breaker)
    assert.are.equal("none", item_of(health(), "gh-other").breaker)
    assert.are.equal(cjson.null, never.last_sync)

    sim:fault{ path_prefix = "/orgs/acme", mode = "server_error", count = 1000000 }
    it = wait_status("gh-health", "unhealthy", 60)
    assert(it, "never unhealthy: " .. cjson.encode(health()))
    assert.is_true(it.errors_1h > 0)
    assert.is_string(it.last_failure)
    assert.is_true(#it.recent_errors > 0 and #it.recent_errors <= 5)
    for _, e in ipairs(it.recent_errors) do
      assert.is_string(e.at)
      assert.truthy(({ http_5xx = 1, circuit_open = 1, other = 1 })[e.class], e.class)
      assert.is_true(#e.message <= 200)
    end
    -- the single item agrees
    local s, b = http(port, "/v1/integrations/gh-health/health", ADMIN)
    assert.are.equal(200, s, b)
    assert.are.equal("unhealthy", cjson.decode(b).status)
    -- and so does the terminal
    local code, out, err = cli_health("--token-file", rt.dir .. "/org.token")
    assert.are.equal(0, code, err)
    assert.truthy(out:match("gh%-health%s+github%s+unhealthy"), out)
    code, out, err = cli_health("--json", "--token-file", rt.dir .. "/org.token")
    assert.are.equal(0, code, err)
    assert.are.equal("unhealthy", item_of(cjson.decode(out), "gh-health").status)

    sim:clear_faults()
    it = wait_status("gh-health", "healthy", 60)
    assert(it, "never recovered: " .. cjson.encode(health()))
    code, out = cli_health("--org", "acme-org") -- the config's admin token
    assert.are.equal(0, code)
    assert.truthy(out:match("gh%-health%s+github%s+healthy"), out)
  end)

  it("scopes health to the token's organization", function()
    local all = health()
    assert.truthy(item_of(all, "gh-other"))
    -- sorted by organization, then integration id
    local keys = {}
    for i, x in ipairs(all.integrations) do keys[i] = x.organization_id .. "/" .. x.integration_id end
    local sorted = { (table.unpack or unpack)(keys) }
    table.sort(sorted)
    assert.are.same(sorted, keys)

    local mine = health(org_token)
    assert.is_true(#mine.integrations >= 2)
    for _, x in ipairs(mine.integrations) do assert.are.equal("acme-org", x.organization_id) end
    local s = http(port, "/v1/health?org=other-org", org_token)
    assert.are.equal(200, s)
    local _, b = http(port, "/v1/health?org=other-org", org_token)
    assert.are.same({}, cjson.decode(b).integrations)
    -- another organization's integration is not found, as one that does not exist
    assert.are.equal(404, (http(port, "/v1/integrations/gh-other/health", org_token)))
    assert.are.equal(404, (http(port, "/v1/integrations/nope/health", org_token)))
    assert.are.equal(401, (http(port, "/v1/health", "jnt_00_00")))
    -- filters
    local _, p = http(port, "/v1/health?provider=nothing", ADMIN)
    assert.are.same({}, cjson.decode(p).integrations)
    local bad, why = http(port, "/v1/health?org=", ADMIN)
    assert.are.equal(400, bad)
    assert.are.equal("org", cjson.decode(why).error.field)
    assert.are.equal(400, (http(port, "/v1/health?provider=" .. string.rep("p", 129), ADMIN)))
    local _, o = http(port, "/v1/health?org=other-org", ADMIN)
    assert.are.equal(1, #cjson.decode(o).integrations)
    -- the CLI with the organization token sees only its organization
    local code, out = cli_health("--token-file", rt.dir .. "/org.token")
    assert.are.equal(0, code)
    assert.is_nil(out:find("gh-other", 1, true), out)
  end)

  it("exports the metrics families promtool accepts", function()
    local s, b = http(port, "/metrics")
    assert.are.equal(200, s)
    for _, needle in ipairs({
      'integration_requests_total{provider="github",organization="acme-org"}',
      'integration_errors_total{provider="github",class="http_5xx"}',
      'integration_latency_seconds_bucket{provider="github",le="+Inf"}',
      '# TYPE integration_rate_limit_wait_seconds histogram',
      '# TYPE integration_rate_limit_rejections_total counter',
      '# TYPE integration_breaker_lanes gauge',
      'junction_job_outcomes_total{provider="github",status="succeeded"}',
      'junction_job_duration_seconds_count{provider="github"}',
      'junction_connector_info{provider="github",version="',
      '# TYPE junction_queue_depth gauge',
      '# TYPE junction_metrics_series_dropped_total counter',
      'junction_vault_operations_total{operation="decrypt"}',
    }) do
      assert.truthy(b:find(needle, 1, true), needle .. " not in:\n" .. b)
    end
    local f = rt.dir .. "/metrics.txt"
    util.write_file(f, b)
    local out = sh("promtool check metrics < " .. shell_quote(f) .. " 2>&1; echo rc=$?")
    assert.truthy(out:find("rc=0", 1, true), out)
  end)

  it("refuses bad invocations of junction health with a precise error", function()
    local code, _, err = rt:cli("health", "--bogus")
    assert.are.equal(2, code)
    assert.truthy(err:find("health: unrecognized option '--bogus'", 1, true), err)
    code, _, err = rt:cli("health", "--org")
    assert.are.equal(2, code)
    assert.truthy(err:find("health: option '--org' requires an argument", 1, true), err)
    code, _, err = rt:cli("health", "extra")
    assert.are.equal(2, code)
    assert.truthy(err:find("unexpected argument 'extra'", 1, true), err)
    code, _, err = cli_health("--token-file", rt.dir .. "/missing")
    assert.are.equal(2, code)
    assert.truthy(err:find("--token-file", 1, true), err)
    code, _, err = rt:cli("health", "--url", "http://127.0.0.1:1", "--token-file",
      rt.dir .. "/org.token")
    assert.are.equal(1, code)
    assert.truthy(err:find("cannot reach the runtime's API", 1, true), err)
  end)
end)
