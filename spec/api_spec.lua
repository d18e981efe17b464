-- The HTTP API of `junction run`, end to end: the binary with the api and
-- worker roles, driven over loopback with curl.
--  * organization tokens from `junction tokens`, credentials and
--    integrations created through the API;
--  * deliveries signed by the providers' own libraries
--    (tools/webhook-peers: @octokit/webhooks-methods, standardwebhooks) are
--    accepted, durably enqueued once, and a worker runs the connector's
--    handle_webhook, whose evidence the API then pages through;
--  * an acknowledged delivery survives a SIGKILL right after its 200, and
--    is answered as a duplicate of the same job after the restart (the
--    store's unique key, not the process's memory);
--  * /metrics passes `promtool check metrics` (Debian's prometheus package);
--  * canary secrets appear in no response and in no log line.
-- The providers' published vectors, one-byte changes, 1,000 concurrent
-- duplicates and the tenant matrix run in runtime/tests/test_api.c.
local cjson = require "cjson"
local runtime = require "helpers.runtime"
local util = require "helpers.util"
local shell_quote, sh = util.shell_quote, util.sh

local ADMIN = "CANARY-SPEC-ADMIN-6d1f0e2a9b8c7d6e5f40"
local GH_SECRET = "CANARY-SPEC-ghsecret-41a9"
local SWH_SECRET = "whsec_Q0FOQVJZLVNQRUMtc3doLWtleS0wMDAx" -- base64 of CANARY-SPEC-swh-key-0001

local CONNECTOR = [[
local c = connector {
  provider_type = "%s", display_name = "Hooks", description = "test connector",
  version = "1.0.0", auth_types = { "api_key" },
  capabilities = { "evidence_collection", "webhook_receiver" },
  rate_limits = { requests_per_second = 5 }, egress = { "api.example.com" },
  documentation_url = "https://example.com", webhook = { scheme = "%s" },
  webhook_events = { "issues" },
}
function c.test_connection(ctx) return { success = true, message = "ok" } end
function c.collect_evidence(ctx, config) end
function c.handle_webhook(ctx, event)
  ctx.emit{ resource_type = "hooks.event", resource_id = event.delivery_id or "none",
    data = { type = event.event_type, number = event.data and event.data.number,
             body_length = #event.body } }
end
return c
]]

local function require_tools()
  for _, pkg in ipairs({ "@octokit/webhooks-methods", "standardwebhooks" }) do
    local f = io.open("tools/webhook-peers/node_modules/" .. pkg .. "/package.json", "rb")
    if not f then
      error("the webhook test peers are not installed: run " ..
        "`npm ci --prefix tools/webhook-peers --no-audit --no-fund`", 0)
    end
    f:close()
  end
  assert(sh("command -v promtool"):match("promtool"),
    "promtool is needed (Debian package prometheus; tools/install-deps)")
end

-- curl: returns status, body (and the headers when asked).
local function curl(port, method, path, opts)
  opts = opts or {}
  local dir = os.tmpname()
  local args = { "curl", "-s", "-o", dir .. ".body", "-w", "%{http_code}", "-X", method,
    "-H", "Expect:" }
  if opts.token then args[#args + 1] = "-H"; args[#args + 1] = "Authorization: Bearer " .. opts.token end
  for _, h in ipairs(opts.headers or {}) do args[#args + 1] = "-H"; args[#args + 1] = h end
  if opts.body then
    util.write_file(dir .. ".in", opts.body)
    args[#args + 1] = "--data-binary"; args[#args + 1] = "@" .. dir .. ".in"
  end
  args[#args + 1] = "http://127.0.0.1:" .. port .. path
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = shell_quote(a) end
  local status = tonumber(sh(table.concat(quoted, " ")))
  local body = util.read_file(dir .. ".body")
  os.remove(dir); os.remove(dir .. ".body"); os.remove(dir .. ".in")
  assert.is_nil(body:find("CANARY", 1, true), "a secret in a response: " .. body)
  assert.is_nil(body:find("Q0FOQVJZ", 1, true), "a secret in a response: " .. body)
  return status, body
end

local function json(body) return cjson.decode(body) end

describe("the HTTP API of junction run", function()
  local rt, port, token

  setup(function()
    require_tools()
    rt = runtime.new{
      connectors = {},
      conf = { "listen = 127.0.0.1:0", "api_admin_token_file = ADMIN_FILE",
               "http_server_rate_per_s = 0", "log_level = info" },
    }
    util.write_file(rt.dir .. "/admin", ADMIN .. "\n")
    local conf = util.read_file(rt.conf):gsub("ADMIN_FILE", rt.dir .. "/admin")
    util.write_file(rt.conf, conf)
    util.write_file(rt.dir .. "/master.key",
      "k1 " .. sh("head -c 32 /dev/urandom | base64"):gsub("%s+$", "") .. "\n")
    rt.env.JUNCTION_MASTER_KEY_FILE = rt.dir .. "/master.key"
    rt:connector("ghhooks.lua", CONNECTOR:format("ghhooks", "github"))
    rt:connector("swhhooks.lua", CONNECTOR:format("swhhooks", "standard_webhooks"))
    local code, out, err = rt:cli("tokens", "create", "--org", "acme", "--scope", "write")
    assert.are.equal(0, code, err)
    token = json(out).token
    assert.truthy(token:match("^jnt_%x+_%x+$"))
    rt:start()
    port = rt:api_port(20)
  end)

  teardown(function()
    if rt then
      rt:stop()
      rt:log_free_of("CANARY", token)
      rt:cleanup()
    end
  end)

  -- A webhook_secret credential and an integration that uses it.
  local function hook_integration(provider, secret)
    local s, b = curl(port, "POST", "/v1/credentials", { token = token, body = cjson.encode{
      provider = provider, auth_type = "webhook_secret", document = { secret = secret } } })
    assert.are.equal(201, s, b)
    local cred = json(b).id
    s, b = curl(port, "POST", "/v1/integrations", { token = token, body = cjson.encode{
      provider = provider, schedule = "366d",
      config = { webhook = { credential_ids = { cred } } } } })
    assert.are.equal(201, s, b)
    return json(b).id
  end

  local function wait_webhook_job(iid)
    return runtime.wait(function()
      local s, b = curl(port, "GET", "/v1/jobs?integration_id=" .. iid, { token = token })
      assert.are.equal(200, s, b)
      for _, j in ipairs(json(b).jobs) do
        if j.kind == "webhook" and j.status == "succeeded" then return j end
      end
    end, 20)
  end

  it("serves health, readiness and connectors", function()
    local s, b = curl(port, "GET", "/healthz")
    assert.are.equal(200, s)
    assert.are.equal("ok", json(b).status)
    s, b = curl(port, "GET", "/readyz")
    assert.are.equal(200, s, b)
    s, b = curl(port, "GET", "/v1/connectors")
    assert.are.equal(401, s)
    assert.are.equal("unauthorized", json(b).error.code)
    s, b = curl(port, "GET", "/v1/connectors", { token = token })
    assert.are.equal(200, s)
    assert.are.equal(2, #json(b).connectors)
  end)

  it("accepts a GitHub delivery signed by @octokit/webhooks-methods once and runs handle_webhook",
    function()
      local iid = hook_integration("ghhooks", GH_SECRET)
      local body = cjson.encode{ action = "opened", number = 1347, note = "caf\195\169" }
      local sig = sh("node --input-type=module -e " .. shell_quote(
        "import { sign } from './tools/webhook-peers/node_modules/@octokit/webhooks-methods/dist-node/index.js';" ..
        "process.stdout.write(await sign(process.argv[1], process.argv[2]));") ..
        " " .. shell_quote(GH_SECRET) .. " " .. shell_quote(body))
      assert.truthy(sig:match("^sha256=%x+$"), sig)
      local headers = { "X-Hub-Signature-256: " .. sig, "X-GitHub-Event: issues",
        "X-GitHub-Delivery: 0b1c2d3e-0000-4000-8000-000000000001",
        "Content-Type: application/json" }
      local s, b = curl(port, "POST", "/v1/webhooks/ghhooks/" .. iid, { headers = headers, body = body })
      assert.are.equal(200, s, b)
      assert.are.equal("accepted", json(b).status)
      s, b = curl(port, "POST", "/v1/webhooks/ghhooks/" .. iid, { headers = headers, body = body })
      assert.are.equal(200, s, b)
      assert.are.equal("duplicate", json(b).status)
      -- tampered: refused, nothing enqueued
      s, b = curl(port, "POST", "/v1/webhooks/ghhooks/" .. iid,
        { headers = headers, body = body:gsub("1347", "1348") })
      assert.are.equal(401, s)
      assert.are.equal("signature_mismatch", json(b).error.code)
      local job = wait_webhook_job(iid)
      assert(job, "handle_webhook did not run")
      s, b = curl(port, "GET", "/v1/integrations/" .. iid .. "/evidence?resource_type=hooks.event",
        { token = token })
      assert.are.equal(200, s, b)
      local page = json(b)
      assert.are.equal(1, #page.items)
      assert.are.equal("0b1c2d3e-0000-4000-8000-000000000001", page.items[1].resource_id)
      assert.are.equal("issues", page.items[1].data.type)
      assert.are.equal(1347, page.items[1].data.number)
      local jobs = json(select(2, curl(port, "GET", "/v1/jobs?integration_id=" .. iid,
        { token = token }))).jobs
      assert.are.equal(1, #jobs)
    end)

  it("accepts a delivery signed by the Standard Webhooks library", function()
    local iid = hook_integration("swhhooks", SWH_SECRET)
    local out = sh("node --input-type=module -e " .. shell_quote(
      "import { Webhook } from './tools/webhook-peers/node_modules/standardwebhooks/dist/index.js';" ..
      "const wh = new Webhook(process.argv[1]); const body = JSON.stringify({type:'user.created',n:7});" ..
      "const id = 'msg_spec_0001'; const ts = new Date();" ..
      "process.stdout.write(JSON.stringify({ body, id, ts: Math.floor(ts/1000), sig: wh.sign(id, ts, body) }));") ..
      " " .. shell_quote(SWH_SECRET))
    local ok, d = pcall(cjson.decode, out)
    assert(ok, "standardwebhooks: " .. out)
    local s, b = curl(port, "POST", "/v1/webhooks/swhhooks/" .. iid, { body = d.body, headers = {
      "webhook-id: " .. d.id, "webhook-timestamp: " .. d.ts, "webhook-signature: " .. d.sig } })
    assert.are.equal(200, s, b)
    assert.truthy(wait_webhook_job(iid), "handle_webhook did not run")
  end)

  it("answers unknown integrations and providers alike", function()
    local s1, b1 = curl(port, "POST", "/v1/webhooks/ghhooks/int_nope", { body = "{}" })
    local s2, b2 = curl(port, "POST", "/v1/webhooks/nope/int_nope", { body = "{}" })
    assert.are.equal(404, s1)
    assert.are.equal(s1, s2)
    assert.are.equal(json(b1).error.message, json(b2).error.message)
  end)

  it("exports metrics promtool accepts", function()
    local s, b = curl(port, "GET", "/metrics")
    assert.are.equal(200, s)
    assert.truthy(b:find("junction_webhook_deliveries_total{provider=\"ghhooks\",outcome=\"accepted\"} 1",
      1, true), b)
    assert.truthy(b:find('junction_jobs{kind="webhook",status="succeeded"}', 1, true))
    local f = rt.dir .. "/metrics.txt"
    util.write_file(f, b)
    local out = sh("promtool check metrics < " .. shell_quote(f) .. " 2>&1; echo rc=$?")
    assert.truthy(out:find("rc=0", 1, true), out)
  end)

  it("revoked tokens stop working at once", function()
    local code, out = rt:cli("tokens", "create", "--org", "acme", "--scope", "read")
    assert.are.equal(0, code)
    local t = json(out)
    assert.are.equal(200, (curl(port, "GET", "/v1/integrations", { token = t.token })))
    assert.are.equal(403, (curl(port, "POST", "/v1/integrations", { token = t.token, body = "{}" })))
    assert.are.equal(0, (rt:cli("tokens", "revoke", t.id)))
    assert.are.equal(401, (curl(port, "GET", "/v1/integrations", { token = t.token })))
    local _, list = rt:cli("tokens", "list", "--org", "acme")
    assert.is_nil(list:find(t.token, 1, true))
    assert.truthy(list:find('"revoked_at":"', 1, true))
  end)

  -- The 200 means the delivery is on disk: after a crash (SIGKILL right after
  -- the answer) and a restart, the same delivery is still known (the
  -- process's memory of recent ids is gone: the store's unique key answers)
  -- and answered with the job it got the first time.
  it("keeps an acknowledged delivery across a crash, deduplicated by the store", function()
    local iid = hook_integration("ghhooks", GH_SECRET)
    local body = cjson.encode{ action = "closed", number = 7 }
    local sig = "sha256=" .. sh("printf %s " .. shell_quote(body) ..
      " | openssl dgst -sha256 -hmac " .. shell_quote(GH_SECRET) .. " -r | cut -d' ' -f1"):gsub("%s+$", "")
    local headers = { "X-Hub-Signature-256: " .. sig, "X-GitHub-Event: issues",
      "X-GitHub-Delivery: 0b1c2d3e-0000-4000-8000-00000000c0de" }
    local s, b = curl(port, "POST", "/v1/webhooks/ghhooks/" .. iid, { headers = headers, body = body })
    assert.are.equal(200, s, b)
    assert.are.equal("accepted", json(b).status)
    local job = json(b).job_id
    local seen = #rt:log_lines()
    rt:kill9()
    rt:start()
    port = rt:api_port(20, seen)
    s, b = curl(port, "POST", "/v1/webhooks/ghhooks/" .. iid, { headers = headers, body = body })
    assert.are.equal(200, s, b)
    assert.are.same({ status = "duplicate", job_id = job }, json(b))
    -- the queue holds it once
    local rows = rt:sql("SELECT count(*) FROM queue_jobs WHERE idempotency_key = 'webhook:" ..
      iid .. ":0b1c2d3e-0000-4000-8000-00000000c0de'")
    assert.are.equal("1", rows:gsub("%s+$", ""))
  end)
end)
