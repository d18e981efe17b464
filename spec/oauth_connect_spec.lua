-- The OAuth connect flow end to end: `junction run` (roles api, scheduler,
-- worker) against oidc-provider (tools/oidc/server.js), a real authorization
-- server that requires PKCE (S256) of every client, whose test user approves
-- at once (or declines, with login_hint=decline).
--
--   GET /v1/oauth/<provider>/authorize → the provider's /auth → approve →
--   the provider redirects to /v1/oauth/<provider>/callback?code&state →
--   Junction exchanges the code (the provider checks the PKCE verifier: a
--   tampered one is refused) → the refresh token becomes an oauth2
--   credential of the integration → a collection refreshes with it at the
--   same provider, whose /_test/whoami then names our client and user.
--
-- The client comes from api_oauth_clients_file, or from the organization's
-- own oauth_client credential (bring your own). Refusals: forged, expired,
-- replayed (also after a restart) and misdirected states, and the provider's
-- error=access_denied, each with its own error code and nothing stored. The
-- client secrets, the codes and every token the provider issued appear in no
-- response, log line, database file or evidence item. ctest sets JUNCTION_BIN.
local cjson = require "cjson"
local runtime = require "helpers.runtime"
local token_helpers = require "helpers.tokens"
local util = require "helpers.util"

local shell_quote, sh, read_file, write_file = util.shell_quote, util.sh, util.read_file,
  util.write_file

local ADMIN = "CANARYOC-admin-token-6a0f4e2d9c8b7a6f5e4d3c2b1a09"
local FILE_ID, FILE_SECRET = "junction-connect", "CANARYOC-file-secret-0123456789abcdef"
local BYOC_ID, BYOC_SECRET = "globex-own-client", "CANARYOC-byoc-secret-fedcba9876543210"
local PROVIDER = "oidcpeer"

local CONNECTOR = token_helpers.whoami_connector{ provider = PROVIDER,
  display_name = "OIDC peer", description = "oidc-provider", auth_types = { "oauth2" },
  id_field = "client_id" }

-- A TCP port nothing listens on now (the provider must know the redirect URI
-- before Junction starts).
local function free_port()
  return assert(tonumber(sh("node -e " .. shell_quote(
    "const s = require('net').createServer().listen(0, '127.0.0.1', () => " ..
    "{ console.log(s.address().port); s.close(); })"))))
end

local function url_decode(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function query(url)
  local q = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do q[url_decode(k)] = url_decode(v) end
  return q
end

local function b64url(bytes_cmd)
  return (sh(bytes_cmd .. " | base64 -w0 | tr '+/' '-_' | tr -d '=\n'"))
end

-- A state signed with the key of the admin token, as Junction derives it:
-- HMAC-SHA256(admin token, "junction oauth state v1").
local function forge_state(payload, admin)
  local key = sh("printf %s 'junction oauth state v1' | openssl dgst -sha256 -hmac " ..
    shell_quote(admin) .. " -binary | od -An -tx1 | tr -d ' \n'")
  local p = cjson.encode(payload)
  return b64url("printf %s " .. shell_quote(p)) .. "." ..
    b64url("printf %s " .. shell_quote(p) .. " | openssl dgst -sha256 -mac HMAC -macopt hexkey:" ..
      key .. " -binary")
end

describe("the OAuth connect flow against oidc-provider", function()
  local rt, oidc, port, callback_base, tokens = nil, nil, nil, nil, {}
  local texts = {} -- every response body, for the final leak check

  -- curl: status, body, Location.
  local function api(method, path, token, body)
    local f = os.tmpname()
    local args = { "curl", "-s", "-o", f .. ".body", "-D", f .. ".head", "-w", "%{http_code}",
      "-X", method, "-H", "Expect:" }
    if token then args[#args + 1] = "-H"; args[#args + 1] = "Authorization: Bearer " .. token end
    if body then
      write_file(f .. ".in", body)
      args[#args + 1] = "-H"; args[#args + 1] = "Content-Type: application/json"
      args[#args + 1] = "--data-binary"; args[#args + 1] = "@" .. f .. ".in"
    end
    args[#args + 1] = path:match("^http") and path or ("http://127.0.0.1:" .. port .. path)
    local quoted = {}
    for i, a in ipairs(args) do quoted[i] = shell_quote(a) end
    local status = tonumber(sh(table.concat(quoted, " ")))
    local text, head = read_file(f .. ".body"), read_file(f .. ".head")
    os.remove(f); os.remove(f .. ".body"); os.remove(f .. ".head"); os.remove(f .. ".in")
    texts[#texts + 1] = text .. "\n" .. head
    return status, text, head:match("\n[Ll]ocation: ([^\r\n]+)")
  end

  local function json(text) return cjson.decode(text) end

  -- The user's browser at the provider: follows the redirects (with the
  -- provider's cookies) until the one back to Junction, which it returns
  -- without visiting it.
  local function browse(url, login_hint)
    if login_hint then url = url .. "&login_hint=" .. login_hint end
    local jar = os.tmpname()
    for _ = 1, 10 do
      local out = sh("curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -b " ..
        shell_quote(jar) .. " -c " .. shell_quote(jar) .. " " .. shell_quote(url))
      local status, to = out:match("^(%d+) (%S*)")
      assert(status and status:match("^30") and to ~= "", "the provider answered " .. out ..
        " at " .. url)
      if to:sub(1, #callback_base) == callback_base then
        os.remove(jar)
        return to
      end
      url = to
    end
    error("no redirect back to Junction after 10 hops")
  end

  local function issued(client) return oidc:issued(client) end

  local function credentials(token)
    local s, b = api("GET", "/v1/credentials", token)
    assert.are.equal(200, s, b)
    return json(b).credentials
  end

  local function integration(token, org)
    local s, b = api("POST", "/v1/integrations", token, cjson.encode{ organization_id = org,
      provider = PROVIDER, schedule = "366d", config = { base_url = oidc:url() } })
    assert.are.equal(201, s, b)
    return json(b).id
  end

  -- authorize, approve: the callback URL with code and state (not visited).
  local function approved(token, iid, login_hint)
    local s, b, loc = api("GET", "/v1/oauth/" .. PROVIDER .. "/authorize?integration_id=" .. iid,
      token)
    assert.are.equal(302, s, b)
    assert.are.equal(json(b).authorize_url, loc)
    return browse(loc, login_hint), loc
  end

  local function sync_and_wait(token, iid)
    local s, b = api("POST", "/v1/integrations/" .. iid .. "/sync", token)
    assert.are.equal(202, s, b)
    local job = json(b).job_id
    local last
    local done = runtime.wait(function()
      local _, jb = api("GET", "/v1/jobs/" .. job, token)
      last = json(jb)
      return last.status ~= "queued" and last.status ~= "running" and last
    end, 30)
    assert(done, "the collection did not finish")
    assert.are.equal("succeeded", done.status, done.error)
    local _, eb = api("GET", "/v1/integrations/" .. iid .. "/evidence?resource_type=oidcpeer.token",
      token)
    local items = json(eb).items
    return items[#items].data
  end

  setup(function()
    port = free_port()
    callback_base = "http://127.0.0.1:" .. port .. "/v1/oauth/" .. PROVIDER .. "/callback"
    rt = runtime.new{
      connectors = {},
      conf = { "listen = 127.0.0.1:" .. port, "api_admin_token_file = ADMIN_FILE",
               "api_oauth_clients_file = CLIENTS_FILE", "allow_hosts = 127.0.0.1",
               "http_server_rate_per_s = 0", "log_level = debug" },
    }
    local function client(id, secret)
      return { client_id = id, client_secret = secret, redirect_uris = { callback_base },
               grant_types = { "authorization_code", "refresh_token" }, response_types = { "code" },
               token_endpoint_auth_method = "client_secret_basic" }
    end
    oidc = token_helpers.oidc_provider(rt.dir, { client(FILE_ID, FILE_SECRET),
      client(BYOC_ID, BYOC_SECRET) })
    write_file(rt.dir .. "/admin", ADMIN .. "\n")
    write_file(rt.dir .. "/oauth-clients.json", cjson.encode({ [PROVIDER] = {
      client_id = FILE_ID, client_secret = FILE_SECRET, scope = "openid offline_access",
      -- offline_access needs the consent prompt (OpenID Connect Core 11)
      authorize_url = oidc:url("/auth?prompt=consent"), token_url = oidc:url("/token") } }))
    write_file(rt.conf, read_file(rt.conf):gsub("ADMIN_FILE", rt.dir .. "/admin")
      :gsub("CLIENTS_FILE", rt.dir .. "/oauth-clients.json"))
    rt.env.JUNCTION_MASTER_KEY_FILE = util.master_keyfile(rt.dir .. "/master.key")
    rt:connector("oidcpeer.lua", CONNECTOR)
    for _, t in ipairs({ { "acme", "write" }, { "acme", "read" }, { "globex", "write" } }) do
      local code, out, err = rt:cli("tokens", "create", "--org", t[1], "--scope", t[2])
      assert.are.equal(0, code, err)
      tokens[t[1] .. ":" .. t[2]] = json(out).token
    end
    rt:start()
    rt:api_port(20)
  end)

  teardown(function()
    if rt then rt:stop() end
    if oidc and rt then
      -- nothing secret anywhere: responses, the log, the database files
      local all = table.concat(texts, "\n") .. rt:all_text()
      for _, s in ipairs({ FILE_SECRET, BYOC_SECRET, ADMIN, "CANARYOC" }) do
        assert.is_nil(all:find(s, 1, true), "a secret leaked: " .. s)
      end
      for _, client in ipairs({ FILE_ID, BYOC_ID }) do
        local i = issued(client)
        for _, kind in ipairs({ "authorization_codes", "access_tokens", "refresh_tokens" }) do
          for _, v in ipairs(i[kind]) do
            assert.is_nil(all:find(v, 1, true), "one of the " .. kind .. " leaked")
          end
        end
      end
    end
    if oidc then oidc:stop() end
    if rt then rt:cleanup() end
  end)

  it("connects an integration: authorize, approve, exchange with PKCE, refresh at collection",
    function()
      local iid = integration(tokens["acme:write"])
      -- who may start it
      local s, b = api("GET", "/v1/oauth/" .. PROVIDER .. "/authorize?integration_id=" .. iid,
        tokens["acme:read"])
      assert.are.equal(403, s, b)
      s, b = api("GET", "/v1/oauth/" .. PROVIDER .. "/authorize?integration_id=" .. iid,
        tokens["globex:write"])
      assert.are.equal(404, s, b)
      s, b = api("GET", "/v1/oauth/" .. PROVIDER .. "/authorize", tokens["acme:write"])
      assert.are.equal(400, s, b)
      assert.are.equal("integration_id", json(b).error.field)

      local cb, loc = approved(tokens["acme:write"], iid)
      local a = query(loc)
      assert.are.equal(oidc:url("/auth"), loc:match("^[^?]+"))
      assert.are.same({ "code", FILE_ID, callback_base, "openid offline_access", "S256", "consent" },
        { a.response_type, a.client_id, a.redirect_uri, a.scope, a.code_challenge_method, a.prompt })
      assert.truthy(a.code_challenge:match("^[%w_-]+$") and #a.code_challenge == 43)
      local c = query(cb)
      assert.are.equal(a.state, c.state)
      assert.truthy(c.code)

      -- The provider enforces the challenge: the code with a tampered
      -- verifier, or with none, is refused (oidc-provider says only
      -- invalid_grant, its description hides why), and it is not used up
      -- (PKCE is checked first): the same code with Junction's verifier then
      -- goes through, so the verifier was all that differed.
      local function exchange(verifier)
        local form = "grant_type=authorization_code&code=" .. c.code .. "&redirect_uri=" ..
          callback_base .. (verifier and ("&code_verifier=" .. verifier) or "")
        local out = sh("curl -s -u " .. shell_quote(FILE_ID .. ":" .. FILE_SECRET) .. " -d " ..
          shell_quote(form) .. " " .. shell_quote(oidc:url("/token")))
        return json(out)
      end
      assert.are.equal("invalid_grant", exchange(("x"):rep(43)).error)
      assert.are.equal("invalid_grant", exchange(nil).error)

      -- Junction's verifier matches its challenge
      s, b = api("GET", cb)
      assert.are.equal(200, s, b)
      local connected = json(b)
      assert.are.same({ "connected", iid }, { connected.status, connected.integration_id })
      local cid = connected.credential_id
      s, b = api("GET", "/v1/integrations/" .. iid, tokens["acme:read"])
      assert.are.equal(cid, json(b).credential_id)
      local found
      for _, cr in ipairs(credentials(tokens["acme:read"])) do
        if cr.id == cid then found = cr end
      end
      assert.are.equal("oauth2", found.auth_type)
      assert.are.same({ "refresh_token", "client_id", "client_secret", "token_url" },
        found.versions[1].metadata.fields)

      -- the same callback again: refused before the code goes anywhere (a
      -- code presented twice makes the provider revoke what it issued)
      s, b = api("GET", cb)
      assert.are.equal(400, s, b)
      assert.are.equal("state_used", json(b).error.code)

      -- a collection refreshes with the stored refresh token at the provider
      local first_refresh = issued(FILE_ID).refresh_tokens[1]
      assert.are.same({ kind = "AccessToken", client_id = FILE_ID, account = "alice" },
        sync_and_wait(tokens["acme:write"], iid))
      local state = json(sh("curl -s " .. shell_quote(oidc:url(
        "/_test/refresh_token_state?token=" .. first_refresh))))
      assert.are.same({ found = true, consumed = true }, state)
      -- and again, with whatever the rotation left in the vault
      assert.are.same({ kind = "AccessToken", client_id = FILE_ID, account = "alice" },
        sync_and_wait(tokens["acme:write"], iid))
    end)

  it("uses the organization's own oauth_client; the credential then names no client", function()
    local doc = { client_id = BYOC_ID, client_secret = BYOC_SECRET, scopes = "openid offline_access",
      authorize_url = oidc:url("/auth?prompt=consent"), token_url = oidc:url("/token") }
    local s, b = api("POST", "/v1/credentials", tokens["globex:write"], cjson.encode{
      provider = PROVIDER, auth_type = "oauth_client", document = doc })
    assert.are.equal(201, s, b)
    s, b = api("POST", "/v1/credentials", tokens["globex:write"], cjson.encode{
      provider = PROVIDER, auth_type = "oauth_client", document = doc })
    assert.are.equal(409, s, b)
    assert.matches("already has an oauth_client", json(b).error.message, 1, true)

    local iid = integration(tokens["globex:write"])
    local cb, loc = approved(tokens["globex:write"], iid)
    assert.are.equal(BYOC_ID, query(loc).client_id)
    s, b = api("GET", cb)
    assert.are.equal(200, s, b)
    local cid = json(b).credential_id
    for _, cr in ipairs(credentials(tokens["globex:write"])) do
      if cr.id == cid then
        assert.are.same({ "refresh_token" }, cr.versions[1].metadata.fields)
      end
    end
    assert.are.same({ kind = "AccessToken", client_id = BYOC_ID, account = "alice" },
      sync_and_wait(tokens["globex:write"], iid))
  end)

  it("refuses forged, expired, replayed and misdirected states, and stores nothing", function()
    local acme = tokens["acme:write"]
    local iid = integration(acme)
    local globex_iid = integration(tokens["globex:write"])
    local cb = approved(acme, iid)
    local c = query(cb)
    local before = #credentials(acme)
    local base = "/v1/oauth/" .. PROVIDER .. "/callback?code=" .. c.code .. "&state="
    local function refused(state, code, path)
      local s, b = api("GET", (path or base) .. state)
      assert.are.equal(400, s, b)
      assert.are.equal(code, json(b).error.code, b)
      return json(b).error
    end
    refused("nope", "invalid_state")
    -- one character of the signed part changed
    local payload, mac = c.state:match("^([^.]+)%.(.+)$")
    local flipped = payload:sub(1, 10) .. (payload:sub(11, 11) == "A" and "B" or "A") ..
      payload:sub(12)
    refused(flipped .. "." .. mac, "invalid_state")
    -- signed with another key
    refused(forge_state({ o = "acme", i = iid, p = PROVIDER, c = FILE_ID, n = ("a"):rep(32),
      e = (os.time() + 600) * 1000 }, "another-admin-token-0123456789abcdef"), "invalid_state")
    -- a genuine state at another provider's callback
    refused(c.state, "invalid_state", "/v1/oauth/github/callback?code=" .. c.code .. "&state=")
    -- expired (signed with the right key)
    local e = refused(forge_state({ o = "acme", i = iid, p = PROVIDER, c = FILE_ID,
      n = ("b"):rep(32), e = (os.time() - 60) * 1000 }, ADMIN), "state_expired")
    assert.matches("10 minutes", e.message, 1, true)
    -- another organization's integration under acme's name (signed right)
    e = refused(forge_state({ o = "acme", i = globex_iid, p = PROVIDER, c = FILE_ID,
      n = ("c"):rep(32), e = (os.time() + 600) * 1000 }, ADMIN), "invalid_state")
    assert.matches("no longer exists in its organization", e.message, 1, true)
    -- missing parameters
    local s, b = api("GET", "/v1/oauth/" .. PROVIDER .. "/callback?code=" .. c.code)
    assert.are.equal(400, s)
    assert.are.equal("state", json(b).error.field)
    s, b = api("GET", "/v1/oauth/" .. PROVIDER .. "/callback?state=" .. c.state)
    assert.are.equal(400, s)
    assert.are.equal("code", json(b).error.field)
    assert.are.equal(before, #credentials(acme))

    -- none of that presented the code to the provider: it still works once
    s, b = api("GET", cb)
    assert.are.equal(200, s, b)
    assert.are.equal(before + 1, #credentials(acme))
    refused(c.state, "state_used")

    -- a state that completed stays used across a restart (the credential
    -- records it)
    local seen = #rt:log_lines()
    rt:stop()
    rt:start()
    rt:api_port(20, seen)
    assert.are.equal("state_used", json(select(2, api("GET", cb))).error.code)
    assert.are.equal(before + 1, #credentials(acme))
  end)

  it("answers the provider's refusal (access_denied) and stores nothing", function()
    local acme = tokens["acme:write"]
    local iid = integration(acme)
    local before = #credentials(acme)
    local cb = approved(acme, iid, "decline")
    local c = query(cb)
    assert.are.equal("access_denied", c.error)
    assert.is_nil(c.code)
    local s, b = api("GET", cb)
    assert.are.equal(400, s, b)
    assert.are.equal("authorization_denied", json(b).error.code)
    assert.matches("access_denied", json(b).error.message, 1, true)
    assert.are.equal(before, #credentials(acme))
    s, b = api("GET", "/v1/integrations/" .. iid, acme)
    assert.is_nil(json(b).credential_id ~= cjson.null and json(b).credential_id or nil)
    -- the state answered once is spent
    s, b = api("GET", "/v1/oauth/" .. PROVIDER .. "/callback?code=x&state=" .. c.state)
    assert.are.equal(400, s, b)
    assert.are.equal("state_used", json(b).error.code)
  end)
end)
