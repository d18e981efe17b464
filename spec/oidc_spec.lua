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
local tokens = require "helpers.tokens"
local util = require "helpers.util"

local CC_SECRET_ID, CC_SECRET = "junction-cc-secret", "CANARYOIDCSECRET-cc-0123456789abcdef"
local CC_JWT_ID = "junction-cc-jwt"
local RT_ID, RT_SECRET = "junction-refresh", "CANARYOIDCSECRET-rt-0123456789abcdef"

local shell_quote, sh, write_file, lines = util.shell_quote, util.sh, util.write_file, util.lines

describe("OAuth token exchanges against oidc-provider", function()
  local server, vault, client_key
  local key_marks = {}

  local function url(path) return server:url(path) end

  local function mint_refresh_token() return server:mint_refresh_token(RT_ID) end

  local function refresh_state(token) return server:refresh_token_state(token) end

  -- No client secret or private key of ours in any of the texts.
  local no_secrets = tokens.no_secrets{
    { "CANARYOIDC", "a client secret leaked" }, { "PRIVATE KEY", "a private key leaked" },
    { key_marks, "a private key leaked" },
  }

  setup(function()
    vault = tokens.vault()
    local pub
    client_key, pub, key_marks[1] = util.genkey(vault.dir, "client")
    assert.matches("PRIVATE KEY", client_key, 1, true)
    server = tokens.oidc_provider(vault.dir, {
      { client_id = CC_SECRET_ID, client_secret = CC_SECRET, grant_types = { "client_credentials" },
        response_types = {}, redirect_uris = {}, token_endpoint_auth_method = "client_secret_basic" },
      { client_id = CC_JWT_ID, grant_types = { "client_credentials" }, response_types = {},
        redirect_uris = {}, token_endpoint_auth_method = "private_key_jwt",
        token_endpoint_auth_signing_alg = "RS256", jwks_pem = pub },
      { client_id = RT_ID, client_secret = RT_SECRET,
        grant_types = { "authorization_code", "refresh_token" }, response_types = { "code" },
        redirect_uris = { "http://127.0.0.1/callback" },
        token_endpoint_auth_method = "client_secret_basic" },
    })
  end)

  teardown(function() tokens.stop(server, vault) end)

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

    local function token_requests() return server:token_requests() end

    -- A job with refresh token rt fails with the provider's invalid_grant,
    -- after exactly one token request, and names no secret; returns its result.
    local function refused_once(rt)
      local before = token_requests()
      local r = T.run(whoami_job(doc(rt), "oauth2"))
      assert.are.equal("failed", r.status)
      assert.matches("HTTP 400 (grant request is invalid)", r.error, 1, true)
      assert.are.equal(before + 1, token_requests())
      no_secrets(r.error)
      assert.is_nil(r.error:find(rt, 1, true), "the refresh token leaked")
      return r
    end

    it("is refused an expired refresh token (invalid_grant), without secrets", function()
      local rt = server:mint_refresh_token(RT_ID, 1)
      assert.are.same({ found = true, consumed = false }, refresh_state(rt))
      -- the provider's clock must pass the token's exp (whole seconds)
      os.execute("sleep 2.2")
      local r = refused_once(rt)
      assert.matches("oauth2 token exchange failed", r.error, 1, true)
    end)

    it("is refused a revoked refresh token (invalid_grant), without secrets", function()
      local rt = mint_refresh_token()
      revoke(rt)
      refused_once(rt)
    end)

    describe("through the binary (creds put, collect --credential)", function()
      local WHOAMI_CONNECTOR = tokens.whoami_connector{ provider = "oidc_peer",
        display_name = "OIDC peer",
        description = "Asks the oidc-provider test peer whom its access token belongs to",
        auth_types = { "oauth2" }, id_field = "client_id" }
      local function junction(...) return vault.cli(...) end

      -- `collect --credential id` with the whoami connector, against the peer.
      local function collect(connector, id)
        return vault:collect(connector, { base_url = url() }, id)
      end

      it("stores the rotated refresh token, so a second process can refresh", function()
        local connector = vault.dir .. "/whoami.lua"
        write_file(connector, WHOAMI_CONNECTOR)
        local rt = mint_refresh_token()
        local id = vault:put("oidc_peer", "oauth2", doc(rt), no_secrets)

        local code, out, err = collect(connector, id)
        assert.are.equal(0, code, err)
        assert.are.equal(1, #lines(out))
        assert.matches(RT_ID, out, 1, true)
        no_secrets(out, err)
        assert.are.same({ found = true, consumed = true }, refresh_state(rt))

        -- the first refresh token is used up at the provider (presenting it
        -- again would revoke the grant): this works only with the rotated
        -- one from the vault
        code, out, err = collect(connector, id)
        assert.are.equal(0, code, err)
        assert.are.equal(1, #lines(out))
        assert.matches(RT_ID, out, 1, true)
        no_secrets(out, err)
        assert.is_nil((out .. err):find(rt, 1, true), "the refresh token leaked")
        for _, text in ipairs({ vault:stored() }) do
          no_secrets(text)
          assert.is_nil(text:find(rt, 1, true), "the refresh token leaked")
        end
      end)

      -- The version's id and state, and whether the credential (its current
      -- version) needs re-authorization, from `creds list`.
      local function listed(id) return vault:listed(id, no_secrets) end

      it("marks a credential whose refresh token was revoked as needing re-authorization, " ..
         "stops presenting it, and clears the mark with a new version", function()
        local connector = vault.dir .. "/whoami.lua"
        write_file(connector, WHOAMI_CONNECTOR)
        local rt = mint_refresh_token()
        revoke(rt)
        local id = vault:put("oidc_peer", "oauth2", doc(rt))
        local c = listed(id)
        assert.is_false(c.needs_reauthorization)
        local texts = {}

        -- The provider refuses the revoked token once: the version is marked.
        local before = token_requests()
        local code, out, err = collect(connector, id)
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
          code, out, err = collect(connector, id)
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
        local path2 = vault.dir .. "/reauthorized.json"
        write_file(path2, doc(rt2))
        code, out, err = junction("creds", "rotate", "--org", "acme", "--id", id, "--from-file",
          path2, "--promote")
        assert.are.equal(0, code, err)
        texts[#texts + 1] = out .. err
        c, list_text = listed(id)
        texts[#texts + 1] = list_text
        assert.is_false(c.needs_reauthorization)
        code, out, err = collect(connector, id)
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
