-- Connector hot deploys across a cluster and through the HTTP API.
--
-- Two (then three) `junction run` processes sharing the real redis-server of
-- the ctest fixture (JUNCTION_TEST_REDIS_URL, database 12, emptied first):
--   - a deploy made on node A (the CLI, then the API) is stored in Redis,
--     announced, and the jobs that node B's worker starts afterwards run it
--     (each job reports its version); connector_poll_ms is at its maximum
--     (60 s), so only the announcement can have carried it;
--   - a broken deploy on A is answered 422 with the reason and changes
--     nothing on either node; an organization token may not deploy;
--   - a node started after the deploy loads the current version;
--   - a rollback on B is seen by A.
-- And one process (embedded): a deploy through the API between two webhook
-- deliveries; the second delivery runs on the new version.
-- ctest sets JUNCTION_BIN.
local cjson = require "cjson.safe"
local runtime = require "helpers.runtime"
local cluster = require "helpers.cluster"
local util = require "helpers.util"
local shell_quote, sh = util.shell_quote, util.sh

local DB = 12
local ADMIN = "CANARY-CLUSTER-ADMIN-0c9d8e7f6a5b4c3d2e1f"
local HOOK_SECRET = "CANARY-CLUSTER-hooksecret-77aa"

-- A connector that reports the version it ran, from collect_evidence and
-- from handle_webhook (GitLab's shared-token scheme: the simplest to send).
local function connector(version, provider)
  return ([[
local c = connector {
  provider_type = "%s", display_name = "Cluster deploy test", description = "reports its version",
  version = "%s", auth_types = { "none", "api_key" },
  capabilities = { "evidence_collection", "webhook_receiver" },
  rate_limits = { requests_per_second = 100 }, egress = { "example.invalid" },
  documentation_url = "https://example.invalid/docs", webhook = { scheme = "gitlab" },
  webhook_events = { "Push Hook" },
}
function c.test_connection() return { success = true } end
function c.collect_evidence(ctx)
  ctx.emit{ resource_type = "deploy.run", resource_id = ctx.run_id,
            data = { version = ctx.connector_version } }
end
function c.handle_webhook(ctx, event)
  ctx.emit{ resource_type = "deploy.hook", resource_id = event.delivery_id or "none",
            data = { version = ctx.connector_version } }
end
return c
]]):format(provider or "clustertest", version)
end

-- curl against a node's API: status, decoded body (or the text).
local function curl(port, method, path, opts)
  opts = opts or {}
  local tmp = os.tmpname()
  local args = { "curl", "-s", "-o", tmp .. ".body", "-w", "%{http_code}", "-X", method,
                 "-H", "Expect:" }
  if opts.token then args[#args + 1] = "-H"; args[#args + 1] = "Authorization: Bearer " .. opts.token end
  for _, h in ipairs(opts.headers or {}) do args[#args + 1] = "-H"; args[#args + 1] = h end
  if opts.body then
    util.write_file(tmp .. ".in", opts.body)
    args[#args + 1] = "--data-binary"; args[#args + 1] = "@" .. tmp .. ".in"
  end
  args[#args + 1] = "http://127.0.0.1:" .. port .. path
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = shell_quote(a) end
  local status = tonumber(sh(table.concat(quoted, " ")))
  local text = util.read_file(tmp .. ".body")
  os.remove(tmp); os.remove(tmp .. ".body"); os.remove(tmp .. ".in")
  assert.is_nil(text:find("CANARY", 1, true), "a secret in a response: " .. text)
  return status, cjson.decode(text) or text
end

-- A node's config with the admin token file.
local function with_admin(node)
  util.write_file(node.dir .. "/admin", ADMIN .. "\n", "600")
  util.write_file(node.conf, util.read_file(node.conf) .. "api_admin_token_file = " ..
    node.dir .. "/admin\n")
end

local function wait_live(node, version, action)
  return node:wait_log(function(l)
    return l.msg == "connector live" and l.provider == "clustertest" and l.version == version
      and (action == nil or l.action == action)
  end, 10)
end

local function no_secrets(node)
  node:log_free_of("CANARY")
end

describe("connector deploys in a cluster", function()
  local redis = cluster.redis(DB)
  local dir = sh("mktemp -d"):gsub("%s+$", "")
  local a, b, c, port_a, port_b

  -- Enqueues a run from node A and returns its finished record (B runs it).
  local function run_job()
    local code, out, err = a:cli("integrations", "sync", "ct-1")
    assert.are.equal(0, code, err)
    local id = out:match("queued job (%x+)")
    assert.is_string(id, out)
    local job = a:wait_job(function(j)
      return j.id == id and j.status ~= "queued" and j.status ~= "running"
    end, 30)
    assert.is_table(job, util.read_file(b.log))
    assert.are.equal("succeeded", job.status, job.error)
    return job
  end

  local function history(port)
    local s, body = curl(port, "GET", "/v1/connectors/clustertest/history", { token = ADMIN })
    assert.are.equal(200, s, cjson.encode(body))
    return body.deploys
  end

  setup(function()
    redis:flush()
    local file = dir .. "/integrations.json"
    util.write_file(file, cjson.encode{
      { id = "ct-1", organization_id = "org-1", provider = "clustertest", interval_s = 86400 } })
    local conf = { "connector_poll_ms = 60000", "queue_max_attempts = 1", "log_level = info",
                   "http_server_rate_per_s = 0" }
    a = cluster.node(redis, { integrations_file = file, conf = conf })
    b = cluster.node(redis, { integrations_file = file, conf = conf })
    c = cluster.node(redis, { integrations_file = file, conf = conf })
    for _, n in ipairs({ a, b, c }) do with_admin(n) end
    a:start("--roles", "api")
    b:start("--roles", "api,worker")
    port_a, port_b = a:api_port(20), b:api_port(20)
    for _, n in ipairs({ a, b }) do
      assert.is_table(n:wait_log(function(l) return l.msg == "junction ready" end, 15),
        util.read_file(n.log))
    end
  end)

  teardown(function()
    for _, n in ipairs({ a, b, c }) do
      if n then n:stop(); no_secrets(n); n:cleanup() end
    end
    assert.is_nil(redis:dump():find("CANARY", 1, true), "a secret in Redis")
    os.execute("rm -rf " .. shell_quote(dir))
  end)

  it("makes a CLI deploy on A live on B; B's jobs run it", function()
    util.write_file(dir .. "/clustertest.lua", connector("1.0.0"))
    local code, out, err = a:cli("connector", "deploy", dir .. "/clustertest.lua", "--actor", "spec")
    assert.are.equal(0, code, err)
    assert.matches("deployed clustertest 1.0.0", out, 1, true)
    -- stored in Redis: the live pointer, the row and the source
    assert.are.equal("1", redis:cmd("HGET", "jn:clive", "clustertest"))
    assert.are.equal("1.0.0", redis:cmd("HGET", "jn:cdeploy:1", "version"))
    assert.is_table(wait_live(b, "1.0.0"), util.read_file(b.log))
    assert.is_table(wait_live(a, "1.0.0"), util.read_file(a.log))
    assert.are.equal("1.0.0", run_job().connector_version)
  end)

  it("deploys through the API of A; B's next job runs the new version", function()
    local s, body = curl(port_a, "POST", "/v1/connectors", { token = ADMIN,
      body = cjson.encode{ source = connector("1.1.0"), name = "clustertest.lua" } })
    assert.are.equal(201, s, cjson.encode(body))
    assert.are.equal("clustertest", body.provider_type)
    assert.are.equal("1.1.0", body.version)
    assert.are.equal("1.0.0", body.previous_version)
    assert.are.equal(2, body.deploy_id)
    assert.is_table(wait_live(b, "1.1.0"), util.read_file(b.log))
    local job = run_job()
    assert.are.equal("1.1.0", job.connector_version)
    local _, out = a:cli("evidence", "export", "--job", job.id)
    local item = cjson.decode(util.lines(out)[1] or "")
    assert.is_table(item, out)
    local data = type(item.data) == "string" and cjson.decode(item.data) or item.data
    assert.are.equal("1.1.0", data.version)
    -- both nodes list the same history; B's API follows the live version
    local ha, hb = history(port_a), history(port_b)
    assert.are.same(ha, hb)
    assert.are.equal(2, #ha)
    assert.are.equal("api:admin", ha[1].actor)
    assert.is_true(ha[1].live)
    local _, list = curl(port_b, "GET", "/v1/connectors", { token = ADMIN })
    assert.are.equal("1.1.0", list.connectors[1].version)
  end)

  it("answers a broken deploy 422 with the reason and changes nothing on either node", function()
    local cases = {
      { connector("1.2.0"):gsub("function c.collect_evidence", "function c.collect_evidenze"),
        "function 'collect_evidence' is missing" },
      { "local c = connector { provider_type = 'clustertest' ", "does not compile" },
      { connector("1.0.5"), "version 1.0.5 is not higher than the live version 1.1.0" },
    }
    for _, case in ipairs(cases) do
      local s, body = curl(port_a, "POST", "/v1/connectors", { token = ADMIN,
        body = cjson.encode{ source = case[1] } })
      assert.are.equal(422, s, cjson.encode(body))
      assert.are.equal("deploy_rejected", body.error.code)
      assert.matches(case[2], body.error.message, 1, true)
    end
    -- malformed requests: 400 naming the member
    local s, body = curl(port_a, "POST", "/v1/connectors", { token = ADMIN, body = "{}" })
    assert.are.equal(400, s)
    assert.are.equal("source", body.error.field)
    s, body = curl(port_a, "POST", "/v1/connectors", { token = ADMIN,
      body = cjson.encode{ source = connector("1.3.0"), signature = 7 } })
    assert.are.equal(400, s)
    assert.are.equal("signature", body.error.field)
    -- an organization's token may not deploy, roll back or read the history
    local code, out, err = a:cli("tokens", "create", "--org", "org-1", "--scope", "write")
    assert.are.equal(0, code, err)
    local org = cjson.decode(out).token
    s = curl(port_a, "POST", "/v1/connectors", { token = org,
      body = cjson.encode{ source = connector("1.3.0") } })
    assert.are.equal(403, s)
    assert.are.equal(403, (curl(port_a, "POST", "/v1/connectors/clustertest/rollback", { token = org })))
    assert.are.equal(403, (curl(port_a, "GET", "/v1/connectors/clustertest/history", { token = org })))
    assert.are.equal(401, (curl(port_a, "GET", "/v1/connectors/clustertest/history")))
    -- nothing changed: the history, the live pointer, B's jobs
    assert.are.equal(2, #history(port_a))
    assert.are.equal(2, #history(port_b))
    assert.are.equal("2", redis:cmd("HGET", "jn:clive", "clustertest"))
    assert.are.equal("1.1.0", run_job().connector_version)
  end)

  it("loads the current version on a node started after the deploy", function()
    c:start("--roles", "worker")
    assert.is_table(c:wait_log(function(l) return l.msg == "junction ready" end, 15),
      util.read_file(c.log))
    assert.is_table(wait_live(c, "1.1.0"), util.read_file(c.log))
    c:stop()
  end)

  it("rolls back on B; A sees it", function()
    local s, body = curl(port_b, "POST", "/v1/connectors/clustertest/rollback", { token = ADMIN })
    assert.are.equal(201, s, cjson.encode(body))
    assert.are.equal("1.0.0", body.version)
    assert.are.equal("1.1.0", body.previous_version)
    assert.is_table(wait_live(a, "1.0.0", "rollback"), util.read_file(a.log))
    local _, list = curl(port_a, "GET", "/v1/connectors", { token = ADMIN })
    assert.are.equal("1.0.0", list.connectors[1].version)
    local h = history(port_a)
    assert.are.equal("rollback", h[1].action)
    assert.are.equal("1.0.0", h[1].version)
    assert.are.equal("1.0.0", run_job().connector_version)
    -- a rollback to a version never deployed: 422, nothing changes
    s, body = curl(port_b, "POST", "/v1/connectors/clustertest/rollback", { token = ADMIN,
      body = cjson.encode{ version = "0.9.0" } })
    assert.are.equal(422, s)
    assert.matches("0.9.0 was never deployed", body.error.message, 1, true)
    s, body = curl(port_b, "POST", "/v1/connectors/Not.A.Provider/rollback", { token = ADMIN })
    assert.are.equal(400, s)
    assert.are.equal(3, #history(port_b))
  end)
end)

describe("a deploy between two webhook deliveries", function()
  local rt, port, token

  setup(function()
    rt = runtime.new{ connectors = {}, conf = { "log_level = info", "http_server_rate_per_s = 0",
                                                 "queue_max_attempts = 1" } }
    with_admin(rt)
    util.write_file(rt.dir .. "/master.key",
      "k1 " .. sh("head -c 32 /dev/urandom | base64"):gsub("%s+$", "") .. "\n")
    rt.env.JUNCTION_MASTER_KEY_FILE = rt.dir .. "/master.key"
    rt:connector("clustertest.lua", connector("1.0.0"))
    local code, out, err = rt:cli("tokens", "create", "--org", "org-1", "--scope", "write")
    assert.are.equal(0, code, err)
    token = cjson.decode(out).token
    rt:start()
    port = rt:api_port(20)
  end)

  teardown(function()
    rt:stop()
    no_secrets(rt)
    rt:cleanup()
  end)

  local function deliver(iid, n, provider)
    local s, body = curl(port, "POST", "/v1/webhooks/" .. (provider or "clustertest") .. "/" .. iid, {
      headers = { "X-Gitlab-Token: " .. HOOK_SECRET, "X-Gitlab-Event: Push Hook",
                  "X-Gitlab-Event-UUID: delivery-" .. n, "Content-Type: application/json" },
      body = cjson.encode{ object_kind = "push", n = n } })
    assert.are.equal(200, s, cjson.encode(body))
    assert.are.equal("accepted", body.status)
    local job = runtime.wait(function()
      local _, list = curl(port, "GET", "/v1/jobs?integration_id=" .. iid, { token = token })
      for _, j in ipairs(list.jobs or {}) do
        if j.kind == "webhook" and j.status ~= "queued" and j.status ~= "running"
          and j.id == body.job_id then return j end
      end
    end, 20)
    assert.is_table(job, util.read_file(rt.log))
    assert.are.equal("succeeded", job.status, job.error)
    return job
  end

  -- A webhook_secret credential and an integration of provider that uses it.
  local function hook_integration(provider)
    local s, body = curl(port, "POST", "/v1/credentials", { token = token, body = cjson.encode{
      provider = provider, auth_type = "webhook_secret", document = { secret = HOOK_SECRET } } })
    assert.are.equal(201, s, cjson.encode(body))
    s, body = curl(port, "POST", "/v1/integrations", { token = token, body = cjson.encode{
      provider = provider, schedule = "366d",
      config = { webhook = { credential_ids = { body.id } } } } })
    assert.are.equal(201, s, cjson.encode(body))
    return body.id
  end

  it("runs the second delivery on the version deployed after the first", function()
    local iid = hook_integration("clustertest")
    local s, body
    assert.are.equal("1.0.0", deliver(iid, 1).connector_version)
    s, body = curl(port, "POST", "/v1/connectors", { token = ADMIN,
      body = cjson.encode{ source = connector("1.1.0") } })
    assert.are.equal(201, s, cjson.encode(body))
    -- the deploy answered after the swap: the next delivery starts on 1.1.0
    assert.are.equal("1.1.0", deliver(iid, 2).connector_version)
    local _, ev = curl(port, "GET", "/v1/integrations/" .. iid .. "/evidence?resource_type=deploy.hook",
      { token = token })
    local versions = {}
    for _, item in ipairs(ev.items) do
      versions[item.resource_id] = item.data.version
    end
    assert.are.same({ ["delivery-1"] = "1.0.0", ["delivery-2"] = "1.1.0" }, versions)
  end)

  it("receives and runs the webhooks of a provider first deployed through the API", function()
    local s, body = curl(port, "POST", "/v1/connectors", { token = ADMIN,
      body = cjson.encode{ source = connector("2.0.0", "latehooks") } })
    assert.are.equal(201, s, cjson.encode(body))
    assert.are.equal(cjson.null, body.previous_version)
    local _, list = curl(port, "GET", "/v1/connectors", { token = token })
    local seen = {}
    for _, c in ipairs(list.connectors) do seen[c.provider_type] = c.webhook_url end
    assert.are.equal("/v1/webhooks/latehooks/{integration_id}", seen.latehooks)
    local iid = hook_integration("latehooks")
    assert.are.equal("2.0.0", deliver(iid, 3, "latehooks").connector_version)
  end)
end)
