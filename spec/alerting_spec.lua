-- Alerting end to end: `junction run` against the provider simulator, with
-- a real Alertmanager (Debian's prometheus-alertmanager) and a receiver of
-- the signed webhook sink that verifies every delivery with the Standard
-- Webhooks reference library (tools/webhook-peers/receiver.mjs).
--  * the simulator's fault injection drives an integration to failure: its
--    health turns unhealthy and Alertmanager holds exactly one alert for it,
--    with the integration's labels;
--  * the webhook receiver got the firing event, signed and verified;
--  * the fault cleared, the integration recovers: Alertmanager no longer
--    lists the alert as active and the receiver got the resolved event;
--  * the integration's credential (a canary) reaches no sink and no log line.
local cjson = require "cjson"
local peer = require "helpers.peer"
local runtime = require "helpers.runtime"
local simulator = require "helpers.simulator"
local util = require "helpers.util"
local shell_quote, sh = util.shell_quote, util.sh

local CANARY = "CANARY-ALERT-simtoken-5e1f9a"
local SWH_SECRET = "whsec_Q0FOQVJZLUFMRVJULXNpZ25pbmcta2V5LTAwMDE=" -- CANARY-ALERT-signing-key-0001
local SWH_KEY = "Q0FOQVJZLUFMRVJULXNpZ25pbmcta2V5LTAwMDE="

local function require_tools()
  assert(sh("command -v prometheus-alertmanager"):match("alertmanager"),
    "prometheus-alertmanager is needed (Debian package prometheus-alertmanager; tools/install-deps)")
  local f = io.open("tools/webhook-peers/node_modules/standardwebhooks/package.json", "rb")
  if not f then
    error("the webhook test peers are not installed: run " ..
      "`npm ci --prefix tools/webhook-peers --no-audit --no-fund` (tools/test does)", 0)
  end
  f:close()
end

local function free_port()
  return tonumber(sh("node -e \"const s=require('net').createServer();" ..
    "s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})\""))
end

local function http_get(url)
  local body = sh("curl -s --max-time 10 " .. shell_quote(url))
  return body
end

-- A real Alertmanager with a temporary configuration and storage, no
-- clustering, on a free loopback port.
local function start_alertmanager(dir)
  local port = free_port()
  util.write_file(dir .. "/alertmanager.yml", table.concat({
    "route:",
    "  receiver: blackhole",
    "  group_wait: 1s",
    "  group_interval: 1s",
    "  repeat_interval: 1h",
    "receivers:",
    "  - name: blackhole",
  }, "\n") .. "\n")
  os.execute("mkdir -p " .. shell_quote(dir .. "/am-data"))
  local pid = tonumber(sh("prometheus-alertmanager --config.file=" ..
    shell_quote(dir .. "/alertmanager.yml") .. " --storage.path=" ..
    shell_quote(dir .. "/am-data") .. " --web.listen-address=127.0.0.1:" .. port ..
    " --cluster.listen-address= --log.level=warn > " .. shell_quote(dir .. "/am.log") ..
    " 2>&1 < /dev/null & echo $!"))
  local url = "http://127.0.0.1:" .. port
  local ready = runtime.wait(function()
    return sh("curl -s -o /dev/null -w '%{http_code}' " .. url .. "/-/ready") == "200"
  end, 30)
  assert(ready, "alertmanager did not start: " .. util.read_file(dir .. "/am.log"))
  return { pid = pid, url = url }
end

-- Alertmanager's alerts for one integration (GET /api/v2/alerts: active,
-- silenced and inhibited; resolved ones are not listed).
local function am_alerts(am, integration)
  local doc = cjson.decode(http_get(am.url .. "/api/v2/alerts"))
  local out = {}
  for _, a in ipairs(doc) do
    if a.labels.integration_id == integration then out[#out + 1] = a end
  end
  return out
end

describe("alerting of junction run", function()
  local sim, am, receiver, rt, dir

  setup(function()
    require_tools()
    dir = sh("mktemp -d"):gsub("%s+$", "")
    am = start_alertmanager(dir)
    sim = simulator.start{ members = 40, repos = 20, tokens = { CANARY } }
    receiver = peer.start("tools/webhook-peers/receiver.mjs", { SWH_SECRET })
    rt = runtime.new{
      connectors = { "github.lua" },
      env = { SIM_TOKEN = CANARY },
      conf = {
        "allow_hosts = 127.0.0.1",
        "integrations_file = INTEGRATIONS",
        "queue_max_attempts = 1",
        "alert_sinks = log, webhook, alertmanager",
        "alert_webhook_url = " .. receiver:url("/alerts"),
        "alert_webhook_secret_file = SECRET_FILE",
        "alertmanager_url = " .. am.url,
        "alert_resend_s = 2",
        -- a short health window so that the spec sees failure and recovery
        "health_bucket_ms = 100",
        "health_min_requests = 3",
        "health_hold_s = 0",
      },
    }
    util.write_file(rt.dir .. "/integrations.json", cjson.encode({
      { id = "gh-alert", organization_id = "acme-org", provider = "github",
        token_env = "SIM_TOKEN", interval_s = 1,
        config = { organization = "acme", base_url = sim:url(),
                   -- no branch-protection lookups: their 404s are ordinary answers
                   resource_types = { "github.organization", "github.member" } } },
    }))
    util.write_file(rt.dir .. "/alert.secret", SWH_SECRET .. "\n")
    local conf = util.read_file(rt.conf):gsub("INTEGRATIONS", rt.dir .. "/integrations.json")
        :gsub("SECRET_FILE", rt.dir .. "/alert.secret")
    util.write_file(rt.conf, conf)
    rt:start()
    assert(rt:wait_log(function(l) return l.msg == "junction ready" end, 30),
      "junction did not start: " .. util.read_file(rt.log))
  end)

  teardown(function()
    if rt then rt:stop() end
    if receiver then receiver:stop() end
    if sim then sim:stop() end
    if am and am.pid then
      os.execute("kill " .. am.pid .. " 2>/dev/null")
      runtime.wait(function() return sh("kill -0 " .. am.pid .. " 2>&1; echo $?"):match("1%s*$") end, 10)
    end
    if rt then rt:cleanup() end
    if dir then os.execute("rm -rf " .. shell_quote(dir)) end
  end)

  local function deliveries()
    return cjson.decode(http_get(receiver:url("/received"))).deliveries
  end

  local function events(kind)
    local out = {}
    for _, d in ipairs(deliveries()) do
      local ok, doc = pcall(cjson.decode, d.body)
      if ok and doc.type == kind and doc.data.labels.integration_id == "gh-alert" then
        out[#out + 1] = doc
      end
    end
    return out
  end

  it("raises one alert in Alertmanager when an integration fails, and resolves it", function()
    -- healthy first: collections succeed, nothing fires
    assert(rt:wait_job(function(j) return j.status == "succeeded" end, 30),
      "no collection succeeded: " .. util.read_file(rt.log))
    assert.are.same({}, am_alerts(am, "gh-alert"))

    sim:fault{ path_prefix = "/orgs/acme", mode = "server_error", count = 1000000 }
    local fired = runtime.wait(function()
      local a = am_alerts(am, "gh-alert")
      for _, x in ipairs(a) do
        if x.labels.alertname == "IntegrationUnhealthy" then return a end
      end
    end, 60)
    assert(fired, "no IntegrationUnhealthy alert in Alertmanager: " .. util.read_file(rt.log))
    -- resent while it fires, still one alert (Alertmanager keys on the labels)
    os.execute("sleep 3")
    fired = am_alerts(am, "gh-alert")
    assert.are.equal(1, #fired, cjson.encode(fired))
    local alert = fired[1]
    assert.are.equal("IntegrationUnhealthy", alert.labels.alertname)
    assert.are.equal("critical", alert.labels.severity)
    assert.are.equal("acme-org", alert.labels.organization_id)
    assert.are.equal("github", alert.labels.provider)
    assert.are.equal("active", alert.status.state)
    assert.truthy(alert.annotations.summary:find("gh-alert", 1, true))
    assert.truthy(alert.annotations.description:find("error rate", 1, true))
    -- the link back is the dashboard on the port the API bound
    local api = rt:wait_log(function(l) return l.msg == "api listening" end, 1)
    assert.are.equal("http://127.0.0.1:" .. api.port .. "/ui", alert.generatorURL)

    -- the signed webhook sink: the firing event arrived, verified
    local firing = runtime.wait(function()
      local e = events("alert.firing")
      for _, x in ipairs(e) do
        if x.data.alertname == "IntegrationUnhealthy" then return x end
      end
    end, 20)
    assert(firing, "the webhook receiver got no firing event")
    assert.are.equal("critical", firing.data.severity)

    -- recovery: the fault cleared, the failures leave the window
    sim:clear_faults()
    -- Recovery passes through degraded: Unhealthy is resolved while
    -- Degraded fires, then Degraded is resolved. Settled means the last
    -- event of every alert of the integration is its resolve (the webhook
    -- sink delivers in order).
    local function settled()
      local last = {}
      for _, d in ipairs(deliveries()) do
        local ok, doc = pcall(cjson.decode, d.body)
        if ok and doc.data and doc.data.labels and doc.data.labels.integration_id == "gh-alert"
          and (doc.type == "alert.firing" or doc.type == "alert.resolved") then
          last[doc.data.alertname] = doc.type
        end
      end
      if next(last) == nil then return false end
      for _, t in pairs(last) do
        if t ~= "alert.resolved" then return false end
      end
      return true
    end
    local resolved = runtime.wait(function()
      return settled() and #am_alerts(am, "gh-alert") == 0
    end, 60)
    assert(resolved, "the alert was not resolved: " .. cjson.encode(am_alerts(am, "gh-alert")))
    -- Alertmanager keeps a resolved alert only as resolved: nothing stays
    -- active for it (its own queue may still be posting the degraded
    -- alert's firing and resolve, in that order)
    local quiet = runtime.wait(function()
      for _, x in ipairs(am_alerts(am, "gh-alert")) do
        if x.status.state == "active" then return false end
      end
      return true
    end, 30)
    assert(quiet, "an alert stayed active: " .. cjson.encode(am_alerts(am, "gh-alert")))

    -- every delivery was signed correctly; no secret reached a sink or the log
    local all = deliveries()
    assert.truthy(#all >= 2)
    for _, d in ipairs(all) do
      assert.is_true(d.verified, d.error)
      assert.is_nil(d.body:find(CANARY, 1, true))
      assert.is_nil(cjson.encode(d.headers):find(SWH_KEY, 1, true))
    end
    -- deduplicated: the re-posts to Alertmanager sent no second webhook event
    local unhealthy_fired = 0
    for _, e in ipairs(events("alert.firing")) do
      if e.data.alertname == "IntegrationUnhealthy" then unhealthy_fired = unhealthy_fired + 1 end
    end
    assert.are.equal(1, unhealthy_fired)
    -- the sinks' outcomes are in /metrics
    local metrics = http_get("http://127.0.0.1:" .. api.port .. "/metrics")
    local delivered = tonumber(metrics:match('junction_alert_delivered_total{sink="alertmanager"} (%d+)'))
    assert.truthy(delivered and delivered >= 2, metrics:match("junction_alert[^\n]*") or metrics)
    assert.truthy(metrics:find('junction_alert_failed_total{sink="webhook"} 0', 1, true) or
      not metrics:find('junction_alert_failed_total{sink="webhook"}', 1, true))
    local am_text = http_get(am.url .. "/api/v2/alerts?active=true&silenced=true&inhibited=true")
    assert.is_nil(am_text:find(CANARY, 1, true))
    local log = util.read_file(rt.log)
    assert.is_nil(log:find(CANARY, 1, true), "the credential in the log")
    assert.is_nil(log:find(SWH_KEY, 1, true), "the signing secret in the log")
    assert.truthy(log:find('"msg":"alert firing"', 1, true))
    assert.truthy(log:find('"msg":"alert resolved"', 1, true))
  end)
end)
