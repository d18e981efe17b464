-- The OAuth 2.0 refresh-token grant (auth type oauth2) end to end against the
-- simulator, which rotates the refresh token on every refresh (as Jira does):
-- through the binary (`creds put`, `collect --credential`: the rotated token
-- is stored as a new vault version, so a second process start works), through
-- testing.run (one refresh for many concurrent jobs), and a rejected refresh
-- token (invalid_grant, then fast failures without contacting the provider).
-- The client secret, refresh tokens and access tokens never appear in output,
-- logs, evidence or the database. ctest sets JUNCTION_BIN.
local T = require "junction.testing"
local cjson = require "cjson"
local simulator = require "helpers.simulator"
local tokens = require "helpers.tokens"

local FILE = "connectors/github.lua"
local CLIENT_ID = "junction-oauth-client"
local CLIENT_SECRET = "CANARYOAUTHSECRET-0123456789abcdef"
local REFRESH_TOKEN = "CANARYOAUTHREFRESH-initial-0123456789"
local MEMBERS, REPOS = 10, 40

local util = require "helpers.util"
local lines = util.lines

-- No client secret, refresh token or access token in any of the texts.
local no_secrets = tokens.no_secrets{
  { "CANARYOAUTH", "the client secret or refresh token leaked" },
  { "sim_rt_", "a rotated refresh token leaked" }, { "sim_at_", "an access token leaked" },
}

describe("oauth2 refresh-token grant", function()
  local sim, vault

  local function stats() return sim:stats().exchanges end

  local function doc(refresh, extra)
    local d = { client_id = CLIENT_ID, client_secret = CLIENT_SECRET,
                token_url = sim:url("/oauth/token"), refresh_token = refresh or REFRESH_TOKEN }
    for k, v in pairs(extra or {}) do d[k] = v end
    return cjson.encode(d)
  end

  setup(function()
    vault = tokens.vault()
    sim = simulator.start{ members = MEMBERS, repos = REPOS, tokens = { "sim-token" },
      client_id = CLIENT_ID, client_secret = CLIENT_SECRET, refresh_token = REFRESH_TOKEN }
  end)

  teardown(function() tokens.stop(sim, vault) end)

  -- the simulator's refresh token is --refresh-token again
  before_each(function() sim:reset() end)

  describe("through the binary (creds put, collect --credential)", function()
    local function versions(id) return vault:versions(id, no_secrets) end

    it("stores every rotated refresh token, so each new process can refresh", function()
      local id = vault:put("github", "oauth2", doc(), no_secrets)
      local config = { organization = "acme", base_url = sim:url() }

      local code, out, err = vault:collect(FILE, config, id)
      assert.are.equal(0, code, err)
      assert.is_true(#lines(out) > REPOS)
      assert.are.equal(1, stats().refresh_token)
      assert.are.equal(0, stats().refresh_token_refused)
      no_secrets(out, err)
      local v = versions(id)
      assert.are.equal("current", v[2])

      -- The first refresh token is now invalid at the simulator: this works
      -- only with the rotated one from the vault.
      code, out, err = vault:collect(FILE, config, id)
      assert.are.equal(0, code, err)
      assert.is_true(#lines(out) > REPOS)
      assert.are.equal(2, stats().refresh_token)
      assert.are.equal(0, stats().refresh_token_refused)
      no_secrets(out, err)
      v = versions(id)
      assert.are.equal("current", v[3])
      assert.are.equal("previous", v[2])
      no_secrets(vault:stored())
    end)
  end)

  describe("through testing.run", function()
    local function user_job(d)
      return {
        source = ([[ local ctx = ...
          local res = assert(ctx.http.get("URL"))
          assert(res.status == 200, "HTTP " .. res.status)
          return res:json().login ]]):gsub("URL", sim:url("/user")),
        allow_hosts = { "127.0.0.1" }, credential = d, credential_type = "oauth2",
      }
    end

    it("makes one refresh for 12 concurrent jobs", function()
      local list = {}
      for i = 1, 12 do list[i] = user_job(doc(nil, { scope = "read" })) end
      local results, logs, raw = T.run(list)
      for _, r in ipairs(results) do
        assert.are.equal("succeeded", r.status, r.error)
        assert.is_string(r.result)
      end
      assert.are.equal(1, stats().refresh_token)
      no_secrets(raw, cjson.encode(logs))
    end)

    -- Proactive refresh (OAUTH_MARGIN_S in token_cache.c): a token is renewed
    -- once fewer than 60 s of its expires_in are left, before the request
    -- that finds it so goes out. The simulator enforces expires_in and counts
    -- each token's uses, so the counts show which token each request carried.
    -- The job changes the lifetime of the next token itself (a control call
    -- without the credential), between its requests.
    local function proactive_job(first_ttl, later_ttl)
      return {
        source = ([[ local ctx = ...
          local function ttl(s)
            local r = assert(ctx.http.post("SIM/_sim/token_ttl", { auth = false,
                                                                  json = { seconds = s } }))
            assert(r.status == 200, "token_ttl: HTTP " .. r.status)
          end
          local statuses = {}
          ttl(FIRST)
          for i = 1, 3 do
            local res = assert(ctx.http.get("SIM/user"))
            statuses[i] = res.status
            if i == 1 then ttl(LATER) end
          end
          return statuses ]]):gsub("SIM", sim:url()):gsub("FIRST", first_ttl)
          :gsub("LATER", later_ttl),
        allow_hosts = { "127.0.0.1" }, credential = doc(), credential_type = "oauth2",
      }
    end

    it("refreshes a token inside the 60 s margin once, before the request goes out", function()
      -- Token 1 lives 60 s: still valid, but inside the margin at once. The
      -- second request refreshes first and carries token 2 (3600 s), which
      -- the third request reuses.
      local r, logs, raw = T.run(proactive_job(60, 3600))
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.same({ 200, 200, 200 }, r.result)
      assert.are.equal(2, stats().refresh_token)
      assert.are.equal(0, stats().refresh_token_refused)
      local tokens = sim:tokens()
      assert.are.equal(2, #tokens)
      -- token 1 carried only the first request, and is still valid now
      -- (so it was when the second request went out with token 2)
      assert.are.same({ n = 1, grant = "refresh_token", expires_in = 60, uses = 1,
                        expired_uses = 0, live = true }, tokens[1])
      assert.are.same({ n = 2, grant = "refresh_token", expires_in = 3600, uses = 2,
                        expired_uses = 0, live = true }, tokens[2])
      no_secrets(raw, cjson.encode(logs), cjson.encode(r.result))
    end)

    it("does not refresh a token outside the margin", function()
      -- 120 s (60 s outside the margin) and 3600 s: one exchange, the token
      -- carries every request.
      for _, ttl in ipairs({ 120, 3600 }) do
        sim:reset()
        local r, logs, raw = T.run(proactive_job(ttl, ttl))
        assert.are.equal("succeeded", r.status, r.error)
        assert.are.same({ 200, 200, 200 }, r.result)
        assert.are.equal(1, stats().refresh_token)
        assert.are.same({ { n = 1, grant = "refresh_token", expires_in = ttl, uses = 3,
                            expired_uses = 0, live = true } }, sim:tokens())
        no_secrets(raw, cjson.encode(logs), cjson.encode(r.result))
      end
    end)

    it("reports invalid_grant, then fails fast without contacting the provider", function()
      local r, logs, raw = T.run{
        source = ([[ local ctx = ...
          local errs = {}
          for i = 1, 7 do
            local res, err = ctx.http.get("URL")
            errs[i] = err or ("HTTP " .. res.status)
          end
          return errs ]]):gsub("URL", sim:url("/user")),
        allow_hosts = { "127.0.0.1" }, credential_type = "oauth2",
        credential = doc("CANARYOAUTHREFRESH-revoked"),
      }
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(7, #r.result)
      for i = 1, 3 do
        assert.matches("oauth2 token exchange failed", r.result[i], 1, true)
        assert.matches("HTTP 400 (invalid_grant)", r.result[i], 1, true)
      end
      for i = 4, 7 do
        assert.matches("credential needs re-authorization: the refresh token was rejected " ..
          "(invalid_grant)", r.result[i], 1, true)
      end
      assert.are.equal(3, stats().refresh_token_refused)
      assert.are.equal(0, stats().refresh_token)
      no_secrets(raw, cjson.encode(r.result), cjson.encode(logs))
    end)

    it("rejects a document without a refresh token, without echoing the secret", function()
      local ok, err = pcall(T.run, user_job(cjson.encode({ client_id = CLIENT_ID,
        client_secret = CLIENT_SECRET, token_url = sim:url("/oauth/token") })))
      assert.is_false(ok)
      assert.matches("oauth2 credential: field 'refresh_token' is required", err, 1, true)
      no_secrets(err)
    end)
  end)
end)
