-- Integration health across a cluster: an API node that runs no jobs shows
-- the health its workers publish to Redis (the ctest fixture's server,
-- JUNCTION_TEST_REDIS_URL, database 14 of its own, emptied before and after).
--  * one node `--roles api`, one `--roles scheduler,worker` and a second
--    worker, against the provider simulator;
--  * the API node's /v1/health, /v1/integrations/{id}/health and
--    `junction health` show the integration healthy, then unhealthy under the
--    simulator's fault, then healthy again: everything it knows comes from
--    the workers' hashes jn:health:{integration_id};
--  * the hash has one field per reporting worker and a TTL a little over the
--    health window;
--  * an organization token sees only its organization;
--  * a value in the hash that is not a snapshot is skipped, and logged
--    without its content;
--  * the provider token (a canary) reaches no Redis value, no response and no
--    log line.
-- Short windows as in health_spec.lua: health_bucket_ms = 100 (a 6 s
-- window) and no hold.
local cjson = require "cjson"
local runtime = require "helpers.runtime"
local cluster = require "helpers.cluster"
local simulator = require "helpers.simulator"
local util = require "helpers.util"
local shell_quote, sh = util.shell_quote, util.sh

local DB = 14
local CANARY = "CANARY-HCLUSTER-simtoken-5e1f03"
local ADMIN = "CANARY-HCLUSTER-admin-9a8b7c6d5e4f3a2b1c0d"

-- Every answer is checked for the canaries.
local http = util.clean_get

local item_of = util.health_item

describe("integration health in a cluster", function()
  local redis = cluster.redis(DB)
  local dir = sh("mktemp -d"):gsub("%s+$", "")
  local sim, api, w1, w2, port, org_token
  local nodes = {}

  setup(function()
    redis:flush()
    sim = simulator.start{ members = 10, repos = 5, tokens = { CANARY } }
    local file = dir .. "/integrations.json"
    util.write_file(file, cjson.encode({
      { id = "gh-health", organization_id = "acme-org", provider = "github",
        token_env = "SIM_TOKEN", interval_s = 1,
        config = { organization = "acme", base_url = sim:url() } },
      { id = "gh-other", organization_id = "other-org", provider = "github",
        token_env = "SIM_TOKEN", interval_s = 3600, enabled = false,
        config = { organization = "acme", base_url = sim:url() } },
    }))
    util.write_file(dir .. "/traffic.json", cjson.encode({
      defaults = { breaker = { open_ms = 500, open_max_ms = 1000 } },
    }))
    util.write_file(dir .. "/admin", ADMIN .. "\n")
    os.execute("chmod 600 " .. shell_quote(dir .. "/admin"))
    local conf = {
      "allow_hosts = 127.0.0.1",
      "traffic_file = " .. dir .. "/traffic.json",
      "api_admin_token_file = " .. dir .. "/admin",
      "http_server_rate_per_s = 0",
      "queue_max_attempts = 1",
      "health_bucket_ms = 100",
      "health_min_requests = 3",
      "health_hold_s = 0",
    }
    for _, name in ipairs({ "api", "w1", "w2" }) do
      nodes[name] = cluster.node(redis, { integrations_file = file, conf = conf,
                                          connectors = { "github.lua" },
                                          env = { SIM_TOKEN = CANARY } })
    end
    api, w1, w2 = nodes.api, nodes.w1, nodes.w2
    local code, out, err = api:cli("tokens", "create", "--org", "acme-org", "--scope", "read")
    assert.are.equal(0, code, err)
    org_token = cjson.decode(out).token
    util.write_file(dir .. "/org.token", org_token .. "\n")
    os.execute("chmod 600 " .. shell_quote(dir .. "/org.token"))
    api:start("--roles", "api")
    port = api:api_port(30)
    w1:start("--roles", "scheduler,worker")
    w2:start("--roles", "worker")
    for _, n in ipairs({ w1, w2 }) do
      assert.is_table(n:wait_log(function(l) return l.msg == "junction ready" end, 30),
        util.read_file(n.log))
    end
  end)

  teardown(function()
    for _, n in pairs(nodes) do
      n:stop()
      n:log_free_of("CANARY", org_token)
    end
    if sim then sim:stop() end
    for _, n in pairs(nodes) do n:cleanup() end
    redis:flush()
    os.execute("rm -rf " .. shell_quote(dir))
  end)

  local health, wait_status = util.health_reader(function() return port end, ADMIN, runtime.wait)

  it("shows on the API node the health the workers see", function()
    local it = wait_status("gh-health", "healthy", 60)
    assert(it, "never healthy: " .. cjson.encode(health()) .. util.read_file(w1.log))
    assert.is_true(it.requests_1h > 0)
    assert.is_string(it.last_success)
    assert.is_string(it.last_check)
    assert.is_number(it.avg_latency_ms)
    -- the API node runs no jobs: what it shows comes from the workers' hash
    local fields = redis:lines("HKEYS", "jn:health:gh-health")
    assert.is_true(#fields >= 1 and #fields <= 2, table.concat(fields, ","))
    for _, f in ipairs(fields) do assert.truthy(f:match("^[^:]+:%d+:"), f) end
    local ttl = redis:int("PTTL", "jn:health:gh-health")
    -- the window (60 buckets of 100 ms), two more buckets and 5 s
    assert.is_true(ttl > 0 and ttl <= 11200, tostring(ttl))
    -- never ran: no hash, unknown
    assert.are.equal(0, redis:int("EXISTS", "jn:health:gh-other"))
    assert.are.equal("unknown", item_of(health(), "gh-other").status)

    sim:fault{ path_prefix = "/orgs/acme", mode = "server_error", count = 1000000 }
    it = wait_status("gh-health", "unhealthy", 60)
    assert(it, "never unhealthy: " .. cjson.encode(health()))
    assert.is_true(it.errors_1h > 0)
    assert.is_string(it.last_failure)
    assert.is_true(#it.recent_errors > 0 and #it.recent_errors <= 5)
    for i, e in ipairs(it.recent_errors) do
      assert.truthy(({ http_5xx = 1, circuit_open = 1, other = 1 })[e.class], e.class)
      assert.is_true(#e.message <= 200)
      if i > 1 then assert.is_true(e.at <= it.recent_errors[i - 1].at) end
    end
    local s, b = http(port, "/v1/integrations/gh-health/health", ADMIN)
    assert.are.equal(200, s, b)
    assert.are.equal("unhealthy", cjson.decode(b).status)
    local code, out, err = api:cli("health", "--url", "http://127.0.0.1:" .. port,
      "--token-file", dir .. "/org.token")
    assert.are.equal(0, code, err)
    assert.is_nil((out .. err):find("CANARY", 1, true))
    assert.truthy(out:match("gh%-health%s+github%s+unhealthy"), out)

    sim:clear_faults()
    it = wait_status("gh-health", "healthy", 60)
    assert(it, "never recovered: " .. cjson.encode(health()))

    -- nothing secret reached Redis
    local dump = redis:dump()
    assert.truthy(dump:find("jn:health:gh-health", 1, true))
    assert.is_nil(dump:find("CANARY", 1, true), "a secret in Redis")
  end)

  it("scopes the cluster's health to the token's organization", function()
    local mine = health(org_token)
    assert.is_true(#mine.integrations >= 1)
    for _, x in ipairs(mine.integrations) do assert.are.equal("acme-org", x.organization_id) end
    assert.truthy(item_of(mine, "gh-health"))
    assert.are.equal(404, (http(port, "/v1/integrations/gh-other/health", org_token)))
    local s, b = http(port, "/v1/integrations/gh-health/health", org_token)
    assert.are.equal(200, s, b)
    assert.are.equal("gh-health", cjson.decode(b).integration_id)
    assert.truthy(item_of(health(), "gh-other"))
  end)

  it("skips a value in the hash that is not a node's snapshot", function()
    -- Redis is shared storage: anything may have written there
    assert.are.equal("1", redis:cmd("HSET", "jn:health:gh-health", "intruder",
      "h1 60000 0 0 0\nb 1 2 9 0 0.000 intruder-value\n"))
    local it = item_of(health(), "gh-health")
    assert.truthy(it, "the answer failed")
    assert.is_true(it.requests_1h > 0)
    assert(runtime.wait(function()
      return util.read_file(api.log):find("skipped 1 unreadable node entries", 1, true)
    end, 10), util.read_file(api.log))
    assert.is_nil(util.read_file(api.log):find("intruder-value", 1, true))
    redis:cmd("HDEL", "jn:health:gh-health", "intruder")
  end)
end)
