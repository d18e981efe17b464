-- Webhook verification in C (core/src/webhook*.c) through
-- testing.webhook_verify:
--  * deliveries signed by the providers' own libraries (tools/webhook-peers:
--    @octokit/webhooks-methods, standardwebhooks, jose), which share no code
--    with the verifier, are accepted, and their tampered or foreign siblings
--    rejected with the right reason;
--  * a scheme declared as a Lua table in a connector's metadata (the shape
--    docs/lua-api.md documents) reaches the C parser through the loader's
--    metadata encoding and verifies deliveries signed by the openssl command.
-- Canary secrets must never show in a message or a response.
local T = require "junction.testing"
local cjson = require "cjson"
local util = require "helpers.util"
local shell_quote, sh = util.shell_quote, util.sh

local NOW_MS = 1700000000000
local CONFIG = {
  now_ms = NOW_MS,
  github_secret = "CANARY-WHPEER-gh-7c1e0d9b",
  github_old_secret = "CANARY-WHPEER-gh-old-52aa",
  -- base64 of "CANARY-WHPEER-swh-new-key-0001" and "...-old-key-0002"
  swh_secret = "whsec_Q0FOQVJZLVdIUEVFUi1zd2gtbmV3LWtleS0wMDAx",
  swh_old_secret = "whsec_Q0FOQVJZLVdIUEVFUi1zd2gtb2xkLWtleS0wMDAy",
  audience = "https://junction.example.com/v1/webhooks/google_pubsub/int-1",
  email = "pubsub-push@acme-prod.iam.gserviceaccount.com",
}

-- The peer's npm packages must be installed (tools/test does it): fail, do
-- not skip, when they are not.
local function require_peer_packages()
  for _, pkg in ipairs({ "@octokit/webhooks-methods", "standardwebhooks", "jose" }) do
    local f = io.open("tools/webhook-peers/node_modules/" .. pkg .. "/package.json", "rb")
    if not f then
      error("the webhook test peers are not installed: run " ..
        "`npm ci --prefix tools/webhook-peers --no-audit --no-fund` (tools/test does)", 0)
    end
    f:close()
  end
end

local function no_canary(result)
  for _, text in ipairs({ result.message or "", result.body or "" }) do
    assert.is_nil(text:find("CANARY", 1, true), "a secret leaked: " .. text)
    assert.is_nil(text:find("Q0FOQVJZ", 1, true), "a secret leaked: " .. text)
  end
end

describe("webhook deliveries signed by the providers' libraries", function()
  local peer

  setup(function()
    require_peer_packages()
    local out = sh("node tools/webhook-peers/sign.mjs " .. shell_quote(cjson.encode(CONFIG)) ..
      " 2>&1")
    local ok, doc = pcall(cjson.decode, out)
    assert(ok and type(doc) == "table" and doc.cases, "sign.mjs failed: " .. out)
    peer = doc
  end)

  it("produces the cases this spec expects", function()
    assert.is_true(#peer.cases >= 13)
  end)

  it("accepts each accepted case and rejects each other with its reason", function()
    local accepted = 0
    for _, case in ipairs(peer.cases) do
      local secrets = { secrets = case.secrets }
      if case.scheme == "google_pubsub" then
        secrets = { audience = CONFIG.audience, jwks = cjson.encode(peer.jwks), email = case.email }
      end
      local r = T.webhook_verify(case.scheme, case.request, secrets)
      no_canary(r)
      if case.expect == "accepted" then
        assert.are.equal("accepted", r.verdict, case.name .. ": " .. tostring(r.message))
        assert.are.equal(200, r.status)
        if case.delivery_id then assert.are.equal(case.delivery_id, r.delivery_id, case.name) end
        if case.event_type then assert.are.equal(case.event_type, r.event_type, case.name) end
        if case.secret_index then
          assert.are.equal(case.secret_index + 1, r.secret_index, case.name)
        end
        accepted = accepted + 1
      else
        assert.are.equal("rejected", r.verdict, case.name)
        assert.are.equal(case.expect, r.reason, case.name .. ": " .. tostring(r.message))
        assert.are.equal(401, r.status, case.name)
      end
    end
    assert.is_true(accepted >= 5)
  end)

  it("rejects a library-signed GitHub delivery once one byte of the body changes", function()
    local case = peer.cases[1]
    local body = case.request.body
    for i = 1, #body, 7 do
      local changed = body:sub(1, i - 1) .. string.char((body:byte(i) + 1) % 256) .. body:sub(i + 1)
      local request = { method = "POST", headers = case.request.headers, body = changed,
        now_ms = NOW_MS }
      local r = T.webhook_verify("github", request, { secrets = case.secrets })
      assert.are.equal("signature_mismatch", r.reason, "byte " .. i)
    end
  end)
end)

local CONNECTOR = [[
local c = connector {
  provider_type = "acme_hooks", display_name = "Acme Hooks", description = "Pushes audit events",
  version = "1.0.0", auth_types = { "api_key" },
  capabilities = { "evidence_collection", "webhook_receiver" },
  rate_limits = { requests_per_second = 5 },
  egress = { "api.acme.example" },
  documentation_url = "https://docs.acme.example",
  webhook = %s,
  webhook_events = { "audit.created" },
}
function c.test_connection(ctx) return { success = true } end
function c.collect_evidence(ctx, config) end
function c.handle_webhook(ctx, event) end
return c
]]

-- The connector's metadata as the loader encoded it, decoded again.
local function declared(webhook_lua)
  local ok, errors, meta = T.validate_source("connectors/acme_hooks.lua",
    CONNECTOR:format(webhook_lua))
  assert.is_true(ok, errors)
  return meta.webhook
end

local function hmac_hex(key, data)
  local dir = os.tmpname()
  local f = assert(io.open(dir, "wb"))
  f:write(data)
  f:close()
  local out = sh("openssl dgst -sha256 -hmac " .. shell_quote(key) .. " -r < " ..
    shell_quote(dir))
  os.remove(dir)
  return assert(out:match("^(%x+)"), "openssl dgst: " .. out)
end

describe("a webhook scheme declared in a connector's metadata", function()
  local SECRET = "CANARY-WHDECL-acme-91f0"

  it("verifies an HMAC scheme declared as a Lua table", function()
    local decl = declared([[{
      scheme = "hmac", algorithm = "sha256",
      signature = { header = "X-Acme-Signature", prefix = "sha256=", encoding = "hex" },
      timestamp = { header = "X-Acme-Timestamp", unit = "s", tolerance = 120 },
      signed_content = "{timestamp}.{body}",
      delivery_id = { header = "X-Acme-Delivery" },
      event_type = { json = "event.type" },
    }]])
    local body = '{"event":{"type":"audit.created","id":"ev_1"}}'
    local ts = string.format("%d", NOW_MS / 1000)
    local request = {
      method = "POST", body = body, now_ms = NOW_MS + 30000,
      headers = {
        { "X-Acme-Signature", "sha256=" .. hmac_hex(SECRET, ts .. "." .. body) },
        { "X-Acme-Timestamp", ts },
        { "X-Acme-Delivery", "dlv-0001" },
      },
    }
    local r = T.webhook_verify(decl, request, { secrets = { SECRET } })
    no_canary(r)
    assert.are.equal("accepted", r.verdict, r.message)
    assert.are.equal("dlv-0001", r.delivery_id)
    assert.are.equal("audit.created", r.event_type)

    request.now_ms = NOW_MS + 121000
    r = T.webhook_verify(decl, request, { secrets = { SECRET } })
    assert.are.equal("stale_timestamp", r.reason)
    assert.is_truthy(r.message:find("121.000 s in the past, outside the 120 s tolerance", 1, true),
      r.message)

    request.now_ms = NOW_MS
    r = T.webhook_verify(decl, request, { secrets = { "CANARY-WHDECL-other" } })
    assert.are.equal("signature_mismatch", r.reason)
    no_canary(r)
  end)

  it("overrides a preset's member and removes another with false", function()
    local decl = declared([[{
      scheme = "okta", token = { header = "X-Okta-Secret" }, challenge = false,
    }]])
    local request = {
      method = "POST", body = '{"eventId":"evt-1","data":{"events":[]}}', now_ms = NOW_MS,
      headers = { { "X-Okta-Secret", SECRET } },
    }
    local r = T.webhook_verify(decl, request, { secrets = { SECRET } })
    assert.are.equal("accepted", r.verdict, r.message)
    assert.are.equal("evt-1", r.delivery_id)
    -- Without the handshake, the verification GET is just a GET.
    r = T.webhook_verify(decl, { method = "GET", now_ms = NOW_MS, headers = {
      { "X-Okta-Verification-Challenge", "abc" }, { "X-Okta-Secret", SECRET } } },
      { secrets = { SECRET } })
    assert.are.equal("method_not_allowed", r.reason)
  end)

  it("answers a declared handshake", function()
    local decl = declared([[{
      scheme = "token", token = { header = "X-Acme-Token" },
      challenge = { method = "GET", detect = { query = "hub.challenge" },
                    response = "text" },
    }]])
    local r = T.webhook_verify(decl, { method = "GET", query = "hub.challenge=abc%20123",
      now_ms = NOW_MS, headers = { { "X-Acme-Token", SECRET } } }, { secrets = { SECRET } })
    assert.are.equal("challenge", r.verdict, r.message)
    assert.are.equal("abc 123", r.body)
    assert.are.equal("text/plain; charset=utf-8", r.content_type)
    r = T.webhook_verify(decl, { method = "GET", query = "hub.challenge=abc", now_ms = NOW_MS,
      headers = {} }, { secrets = { SECRET } })
    assert.are.equal("missing_token", r.reason)
  end)

  it("refuses a declaration the parser cannot accept, naming the member", function()
    local decl = declared([[{ scheme = "hmac", signature = { header = "X-Sig" },
      timestamp = { header = "X-Ts" } }]])
    local ok, err = pcall(T.webhook_verify, decl, { method = "POST", body = "{}" },
      { secrets = { SECRET } })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("a timestamp header must be signed", 1, true), err)
  end)
end)
