-- The runtime's OAuth 2.0 token exchanges against a real authorization server:
-- oidc-provider (tools/oidc/server.js, an npm test peer that tools/test
-- installs), besides the project's own simulator (grants_spec, oauth_spec).
-- client_credentials with client_secret_basic and with private_key_jwt, and
-- the refresh-token grant (oauth2) with refresh-token rotation, through
-- testing.run and through the binary (`creds put`, `collect --credential`).
-- A connector's request to the peer's /_test/whoami succeeds only with an
-- access token the provider itself issued and still knows. ctest sets
-- JUNCTION_BIN.
local T = require "junction.testing"
local cjson = require "cjson"
local peer = require "helpers.peer"

local BIN = os.getenv("JUNCTION_BIN") or "./build/junction"
local SERVER = "tools/oidc/server.js"
local CC_SECRET_ID, CC_SECRET = "junction-cc-secret", "CANARYOIDCSECRET-cc-0123456789abcdef"
local CC_JWT_ID = "junction-cc-jwt"
local RT_ID, RT_SECRET = "junction-refresh", "CANARYOIDCSECRET-rt-0123456789abcdef"

local util = require "helpers.util"
local shell_quote, sh, read_file, write_file, lines =
  util.shell_quote, util.sh, util.read_file, util.write_file, util.lines

-- The peer's npm packages must be installed (tools/test does it): fail, do
-- not skip, when they are not.
local function require_peer_packages()
  local f = io.open("tools/oidc/node_modules/oidc-provider/package.json", "rb")
  if not f then
    error("the oidc-provider test peer is not installed: run " ..
      "`npm ci --prefix tools/oidc --no-audit --no-fund` (tools/test does)", 0)
  end
  local version = cjson.decode(f:read("*a")).version
  f:close()
  assert(version:match("^8%."), "tools/oidc: expected oidc-provider 8.x, found " .. version)
end

describe("OAuth token exchanges against oidc-provider", function()
  local server, dir, data, keyfile, client_key
  local key_marks = {}

  local function url(path) return "http://127.0.0.1:" .. server.port .. (path or "") end

  local function curl(method, path)
    local out = sh("curl -sS -X " .. method .. " " .. shell_quote(url(path)))
    local ok, v = pcall(cjson.decode, out)
    assert(ok, "the peer's " .. path .. " answered " .. out)
    return v
  end

  local function mint_refresh_token()
    return assert(curl("POST", "/_test/refresh_token?client_id=" .. RT_ID).refresh_token)
  end

  local function refresh_state(token)
    return curl("GET", "/_test/refresh_token_state?token=" .. token)
  end

  -- No client secret or private key of ours in any of the texts.
  local function no_secrets(...)
    for _, text in ipairs({ ... }) do
      assert.is_nil(text:find("CANARYOIDC", 1, true), "a client secret leaked")
      assert.is_nil(text:find("PRIVATE KEY", 1, true), "a private key leaked")
      for _, mark in ipairs(key_marks) do
        assert.is_nil(text:find(mark, 1, true), "a private key leaked")
      end
    end
  end

  setup(function()
    require_peer_packages()
    dir = sh("mktemp -d"):gsub("%s+$", "")
    data = dir .. "/data"
    keyfile = dir .. "/master.keys"
    write_file(keyfile, "# junction master keys\nk1 " ..
      sh("head -c 32 /dev/urandom | base64"):gsub("%s+", "") .. "\n")
    local priv, pub = dir .. "/client.pem", dir .. "/client.pub"
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. shell_quote(priv) ..
      " 2>/dev/null && openssl pkey -in " .. shell_quote(priv) .. " -pubout -out " ..
      shell_quote(pub) .. " 2>/dev/null")
    client_key = read_file(priv)
    assert.matches("PRIVATE KEY", client_key, 1, true)
    key_marks[1] = lines(client_key)[3]
    local config = dir .. "/clients.json"
    write_file(config, cjson.encode({ clients = {
      { client_id = CC_SECRET_ID, client_secret = CC_SECRET, grant_types = { "client_credentials" },
        response_types = {}, redirect_uris = {}, token_endpoint_auth_method = "client_secret_basic" },
      { client_id = CC_JWT_ID, grant_types = { "client_credentials" }, response_types = {},
        redirect_uris = {}, token_endpoint_auth_method = "private_key_jwt",
        token_endpoint_auth_signing_alg = "RS256", jwks_pem = pub },
      { client_id = RT_ID, client_secret = RT_SECRET,
        grant_types = { "authorization_code", "refresh_token" }, response_types = { "code" },
        redirect_uris = { "http://127.0.0.1/callback" },
        token_endpoint_auth_method = "client_secret_basic" },
    } }))
    server = peer.start(SERVER, { "--config", config })
  end)

  teardown(function()
    if server then server:stop() end
    if dir then os.execute("rm -rf " .. shell_quote(dir)) end
  end)

  -- A script connector: GET /_test/whoami n times, returning what the
  -- provider says of the token (an error for any status but 200).
  local function whoami_job(doc, auth_type, n)
    return {
      source = ([[ local ctx = ...
        local seen = {}
        for i = 1, N do
          local res, err = ctx.http.get("URL")
          if not res then error(err, 0) end
          if res.status ~= 200 then error("HTTP " .. res.status .. " " .. res.body, 0) end
          seen[i] = res:json()
        end
        return seen ]]):gsub("URL", url("/_test/whoami")):gsub("N", tostring(n or 3)),
      allow_hosts = { "127.0.0.1" }, credential = doc, credential_type = auth_type,
    }
  end

  describe("client_credentials", function()
    it("obtains a token with client_secret_basic that the provider accepts", function()
      local r, logs, raw = T.run(whoami_job(cjson.encode({ client_id = CC_SECRET_ID,
        client_secret = CC_SECRET, token_url = url("/token"), scope = "read" }),
        "client_credentials"))
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(3, #r.result)
      for _, who in ipairs(r.result) do
        assert.are.same({ kind = "ClientCredentials", client_id = CC_SECRET_ID }, who)
      end
      no_secrets(raw, cjson.encode(logs))
    end)

    it("obtains a token with private_key_jwt that the provider accepts", function()
      local r, logs, raw = T.run(whoami_job(cjson.encode({ client_id = CC_JWT_ID,
        private_key = client_key, token_url = url("/token") }), "client_credentials"))
      assert.are.equal("succeeded", r.status, r.error)
      for _, who in ipairs(r.result) do
        assert.are.same({ kind = "ClientCredentials", client_id = CC_JWT_ID }, who)
      end
      no_secrets(raw, cjson.encode(logs))
    end)

    it("reports the provider's refusal of a wrong secret", function()
      local r = T.run(whoami_job(cjson.encode({ client_id = CC_SECRET_ID,
        client_secret = "CANARYOIDCSECRET-wrong", token_url = url("/token") }),
        "client_credentials"))
      assert.are.equal("failed", r.status)
      assert.matches("client_credentials token exchange failed", r.error, 1, true)
      assert.matches("HTTP 401", r.error, 1, true)
      no_secrets(r.error)
    end)
  end)

  describe("oauth2 refresh-token grant with rotation", function()
    local function doc(refresh)
      return cjson.encode({ client_id = RT_ID, client_secret = RT_SECRET,
                            token_url = url("/token"), refresh_token = refresh })
    end

    it("refreshes, and the provider refuses the rotated-out refresh token", function()
      local rt = mint_refresh_token()
      assert.are.same({ found = true, consumed = false }, refresh_state(rt))
      local r, logs, raw = T.run(whoami_job(doc(rt), "oauth2"))
      assert.are.equal("succeeded", r.status, r.error)
      for _, who in ipairs(r.result) do
        assert.are.same({ kind = "AccessToken", client_id = RT_ID, account = "alice" }, who)
      end
      no_secrets(raw, cjson.encode(logs))
      assert.is_nil(raw:find(rt, 1, true), "the refresh token leaked")
      -- the provider rotated it: the one the job started with is used up
      assert.are.same({ found = true, consumed = true }, refresh_state(rt))

      -- A second exchange with the old document (a new runtime: nothing
      -- cached) is refused with invalid_grant (oidc-provider's description of
      -- it: "grant request is invalid"); the provider then revokes the grant.
      local raw_check = T.run{
        source = ([[ local ctx = ...
          local res = assert(ctx.http.post("URL", { auth = false, body = "BODY", headers = {
            ["Authorization"] = "Basic " .. ctx.crypto.base64_encode("ID:SECRET"),
            ["Content-Type"] = "application/x-www-form-urlencoded" } }))
          return { status = res.status, error = res:json().error } ]]):gsub("URL", url("/token"))
          :gsub("BODY", "grant_type=refresh_token&refresh_token=" .. rt)
          :gsub("ID", RT_ID):gsub("SECRET", RT_SECRET),
        allow_hosts = { "127.0.0.1" },
      }
      assert.are.equal("succeeded", raw_check.status, raw_check.error)
      assert.are.same({ status = 400, error = "invalid_grant" }, raw_check.result)

      local again = T.run(whoami_job(doc(rt), "oauth2"))
      assert.are.equal("failed", again.status)
      assert.matches("oauth2 token exchange failed", again.error, 1, true)
      assert.matches("HTTP 400 (grant request is invalid)", again.error, 1, true)
      no_secrets(again.error)
    end)

    -- RFC 7009 revocation at the provider's own endpoint, as the client.
    local function revoke(token)
      local out = sh("curl -sS -o /dev/null -w '%{http_code}' -u " ..
        shell_quote(RT_ID .. ":" .. RT_SECRET) .. " --data-urlencode " ..
        shell_quote("token=" .. token) .. " -d token_type_hint=refresh_token " ..
        shell_quote(url("/token/revocation")))
      assert.are.equal("200", out)
      assert.are.same({ found = false, consumed = false }, refresh_state(token))
    end

    local function token_requests() return curl("GET", "/_test/token_requests").count end

    it("is refused an expired refresh token (invalid_grant), without secrets", function()
      local rt = assert(curl("POST", "/_test/refresh_token?client_id=" .. RT_ID .. "&ttl=1")
        .refresh_token)
      assert.are.same({ found = true, consumed = false }, refresh_state(rt))
      -- the provider's clock must pass the token's exp (whole seconds)
      os.execute("sleep 2.2")
      local before = token_requests()
      local r = T.run(whoami_job(doc(rt), "oauth2"))
      assert.are.equal("failed", r.status)
      assert.matches("oauth2 token exchange failed", r.error, 1, true)
      assert.matches("HTTP 400 (grant request is invalid)", r.error, 1, true)
      assert.are.equal(before + 1, token_requests())
      no_secrets(r.error)
      assert.is_nil(r.error:find(rt, 1, true), "the refresh token leaked")
    end)

    it("is refused a revoked refresh token (invalid_grant), without secrets", function()
      local rt = mint_refresh_token()
      revoke(rt)
      local before = token_requests()
      local r = T.run(whoami_job(doc(rt), "oauth2"))
      assert.are.equal("failed", r.status)
      assert.matches("HTTP 400 (grant request is invalid)", r.error, 1, true)
      assert.are.equal(before + 1, token_requests())
      no_secrets(r.error)
      assert.is_nil(r.error:find(rt, 1, true), "the refresh token leaked")
    end)

    describe("through the binary (creds put, collect --credential)", function()
      local WHOAMI_CONNECTOR = [[
local c = connector {
  provider_type = "oidc_peer",
  display_name = "OIDC peer",
  description = "Asks the oidc-provider test peer whom its access token belongs to",
  version = "1.0.0",
  auth_types = { "oauth2" },
  capabilities = { "evidence_collection" },
  egress = { "127.0.0.1" },
  rate_limits = { requests_per_second = 10 },
  documentation_url = "https://example.com/docs",
}
function c.test_connection(ctx) return { success = true, message = "ok" } end
function c.collect_evidence(ctx, config)
  local res, err = ctx.http.get(config.base_url .. "/_test/whoami")
  if not res then error(err, 0) end
  if res.status ~= 200 then error("HTTP " .. res.status, 0) end
  local who = res:json()
  ctx.emit{ resource_type = "oidc_peer.token", resource_id = who.client_id, data = who }
end
return c
]]

      local function junction(...)
        local cmd = { "env", "-u", "JUNCTION_MASTER_KEY", "-u", "JUNCTION_CONFIG",
                      shell_quote("JUNCTION_MASTER_KEY_FILE=" .. keyfile),
                      shell_quote("JUNCTION_DATA_DIR=" .. data), shell_quote(BIN) }
        for _, a in ipairs({ ... }) do cmd[#cmd + 1] = shell_quote(a) end
        local out, err = dir .. "/stdout", dir .. "/stderr"
        local code = tonumber(sh(table.concat(cmd, " ") .. " > " .. shell_quote(out) .. " 2> " ..
          shell_quote(err) .. " < /dev/null; echo $?"):match("(%d+)%s*$"))
        return code, read_file(out), read_file(err)
      end

      it("stores the rotated refresh token, so a second process can refresh", function()
        local connector = dir .. "/whoami.lua"
        write_file(connector, WHOAMI_CONNECTOR)
        local rt = mint_refresh_token()
        local path = dir .. "/oauth.json"
        write_file(path, doc(rt))
        local code, out, err = junction("creds", "put", "--org", "acme", "--provider",
          "oidc_peer", "--auth-type", "oauth2", "--from-file", path)
        assert.are.equal(0, code, err)
        no_secrets(out, err)
        local id = cjson.decode(lines(out)[1]).id
        local config = cjson.encode({ base_url = url() })

        code, out, err = junction("collect", connector, "--config", config, "--allow-host",
          "127.0.0.1", "--org", "acme", "--credential", id)
        assert.are.equal(0, code, err)
        assert.are.equal(1, #lines(out))
        assert.matches(RT_ID, out, 1, true)
        no_secrets(out, err)
        assert.are.same({ found = true, consumed = true }, refresh_state(rt))

        -- the first refresh token is used up at the provider (presenting it
        -- again would revoke the grant): this works only with the rotated
        -- one from the vault
        code, out, err = junction("collect", connector, "--config", config, "--allow-host",
          "127.0.0.1", "--org", "acme", "--credential", id)
        assert.are.equal(0, code, err)
        assert.are.equal(1, #lines(out))
        assert.matches(RT_ID, out, 1, true)
        no_secrets(out, err)
        assert.is_nil((out .. err):find(rt, 1, true), "the refresh token leaked")
        for _, f in ipairs({ "junction.db", "junction.db-wal", "junction.db-shm" }) do
          no_secrets(read_file(data .. "/" .. f))
          assert.is_nil(read_file(data .. "/" .. f):find(rt, 1, true), "the refresh token leaked")
        end
      end)

      -- The version's id and state, and whether the credential (its current
      -- version) needs re-authorization, from `creds list`.
      local function listed(id)
        local code, out, err = junction("creds", "list", "--org", "acme")
        assert.are.equal(0, code, err)
        no_secrets(out, err)
        for _, line in ipairs(lines(out)) do
          local c = cjson.decode(line)
          if c.id == id then return c, out end
        end
        error("credential " .. id .. " is not listed: " .. out)
      end

      it("marks a credential whose refresh token was revoked as needing re-authorization, " ..
         "stops presenting it, and clears the mark with a new version", function()
        local connector = dir .. "/whoami.lua"
        write_file(connector, WHOAMI_CONNECTOR)
        local rt = mint_refresh_token()
        revoke(rt)
        local path = dir .. "/revoked.json"
        write_file(path, doc(rt))
        local code, out, err = junction("creds", "put", "--org", "acme", "--provider",
          "oidc_peer", "--auth-type", "oauth2", "--from-file", path)
        assert.are.equal(0, code, err)
        local id = cjson.decode(lines(out)[1]).id
        local c = listed(id)
        assert.is_false(c.needs_reauthorization)
        local config = cjson.encode({ base_url = url() })
        local texts = {}

        -- The provider refuses the revoked token once: the version is marked.
        local before = token_requests()
        code, out, err = junction("collect", connector, "--config", config, "--allow-host",
          "127.0.0.1", "--org", "acme", "--credential", id)
        assert.are_not.equal(0, code)
        assert.matches("HTTP 400 (grant request is invalid)", err, 1, true)
        assert.matches("needs re-authorization", err, 1, true)
        assert.are.equal(before + 1, token_requests())
        texts[#texts + 1] = out .. err
        local list_text
        c, list_text = listed(id)
        texts[#texts + 1] = list_text
        assert.is_true(c.needs_reauthorization)
        assert.are.equal(1, #c.versions)
        assert.are.equal("current", c.versions[1].state)
        assert.matches("HTTP 400 (grant request is invalid)",
          c.versions[1].needs_reauthorization.reason, 1, true)
        assert.is_true(c.versions[1].needs_reauthorization.since_ms > 0)

        -- A new process (the mark is in the store) fails at once, without
        -- presenting the refused token to the provider again.
        for _ = 1, 2 do
          code, out, err = junction("collect", connector, "--config", config, "--allow-host",
            "127.0.0.1", "--org", "acme", "--credential", id)
          assert.are_not.equal(0, code)
          assert.matches("credential '" .. id .. "' needs re-authorization: version 1", err, 1,
            true)
          assert.matches("junction creds rotate", err, 1, true)
          texts[#texts + 1] = out .. err
        end
        assert.are.equal(before + 1, token_requests())

        -- The audit log records the mark and still verifies.
        code, out, err = junction("audit", "verify")
        assert.are.equal(0, code, out .. err)

        -- Re-authorized: a new version (the user connected again) clears it.
        local rt2 = mint_refresh_token()
        local path2 = dir .. "/reauthorized.json"
        write_file(path2, doc(rt2))
        code, out, err = junction("creds", "rotate", "--org", "acme", "--id", id, "--from-file",
          path2, "--promote")
        assert.are.equal(0, code, err)
        texts[#texts + 1] = out .. err
        c, list_text = listed(id)
        texts[#texts + 1] = list_text
        assert.is_false(c.needs_reauthorization)
        code, out, err = junction("collect", connector, "--config", config, "--allow-host",
          "127.0.0.1", "--org", "acme", "--credential", id)
        assert.are.equal(0, code, err)
        assert.matches(RT_ID, out, 1, true)
        texts[#texts + 1] = out .. err
        assert.are.same({ found = true, consumed = true }, refresh_state(rt2))

        for _, text in ipairs(texts) do
          no_secrets(text)
          assert.is_nil(text:find(rt, 1, true), "the revoked refresh token leaked")
          assert.is_nil(text:find(rt2, 1, true), "the new refresh token leaked")
        end
      end)
    end)
  end)
end)
