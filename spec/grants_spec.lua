-- Token-exchange grants end to end against the simulator: github_app
-- (installation tokens from an app JWT) and client_credentials (client secret
-- and private_key_jwt), through testing.run and through the binary with
-- `junction creds put` and `collect --credential`. Exchanges are single
-- flight: one per credential however many requests and jobs need the token.
-- The private keys, the client secret and the exchanged tokens never appear
-- in output, logs, evidence or the database. ctest sets JUNCTION_BIN.
local T = require "junction.testing"
local cjson = require "cjson"
local simulator = require "helpers.simulator"
local tokens = require "helpers.tokens"

local FILE = "connectors/github.lua"
local APP_ID = "424242"
local CLIENT_ID = "junction-spec-client"
local CLIENT_SECRET = "CANARYGRANTSECRET-0123456789abcdef"
local MEMBERS, REPOS = 30, 150

local util = require "helpers.util"
local lines = util.lines

describe("token-exchange grants", function()
  local sim, vault
  local app_key, client_key, wrong_key -- PEM private keys
  local key_marks = {}                   -- a base64 line from each private key

  local function genkey(name)
    local pem, pub, mark = util.genkey(vault.dir, name)
    key_marks[#key_marks + 1] = mark
    return pem, pub
  end

  -- No secret of ours, and no exchanged token, in any of the texts.
  local no_secrets = tokens.no_secrets{
    { "PRIVATE KEY", "a private key leaked" }, { key_marks, "a private key leaked" },
    { "CANARYGRANT", "the client secret leaked" }, { "ghs_", "an installation token leaked" },
    { "sim_cc_", "an access token leaked" },
  }

  local function exchanges()
    return sim:stats().exchanges
  end

  local function github_doc(key, installation)
    return cjson.encode({ app_id = APP_ID, private_key = key,
                          installation_id = installation or "100", api_base = sim:url() })
  end

  local function config()
    return { organization = "acme", base_url = sim:url() }
  end

  local function collect_opts(doc)
    local cfg = config()
    return { file = FILE, entry = "collect_evidence", args = { cfg }, config = cfg,
             allow_hosts = { "127.0.0.1" }, timeout_ms = 120000,
             credential = doc, credential_type = "github_app" }
  end

  setup(function()
    vault = tokens.vault()
    local app_pub, client_pub
    app_key, app_pub = genkey("app")
    client_key, client_pub = genkey("client")
    wrong_key = genkey("wrong")
    sim = simulator.start{ members = MEMBERS, repos = REPOS, tokens = { "sim-token" },
      client_id = CLIENT_ID, client_secret = CLIENT_SECRET, client_key_file = client_pub,
      args = { "--app-key-file", app_pub, "--app-id", APP_ID } }
  end)

  teardown(function() tokens.stop(sim, vault) end)

  before_each(function() sim:reset() end)

  describe("github_app", function()
    it("collects with an installation token from exactly one exchange", function()
      local r, logs, raw = T.run(collect_opts(github_doc(app_key)))
      assert.are.equal("succeeded", r.status, r.error)
      assert.is_true(r.requests > REPOS, "expected hundreds of requests")
      assert.is_true(r.item_count > 0)
      assert.are.equal(1, exchanges().github_app)
      assert.are.equal(0, exchanges().github_app_refused)
      no_secrets(raw, cjson.encode(r.items), cjson.encode(logs))
    end)

    it("makes one exchange for 20 concurrent jobs with the same credential", function()
      local list = {}
      for i = 1, 20 do
        list[i] = collect_opts(github_doc(app_key))
        -- one organization each: the GitHub budget of a single organization
        -- would (rightly) pace 20 full collections over many minutes
        list[i].organization_id = "org-" .. i
      end
      local results, _, raw = T.run(list)
      for _, r in ipairs(results) do
        assert.are.equal("succeeded", r.status, r.error)
        no_secrets(cjson.encode(r.items))
      end
      assert.are.equal(1, exchanges().github_app)
      no_secrets(raw)
    end)

    it("fails with the exchange's error, without secrets, when the app key is wrong", function()
      local r, logs, raw = T.run(collect_opts(github_doc(wrong_key)))
      assert.are.equal("failed", r.status)
      assert.matches("github_app token exchange failed", r.error, 1, true)
      assert.matches("/app/installations/100/access_tokens", r.error, 1, true)
      assert.matches("HTTP 401", r.error, 1, true)
      assert.are.equal(0, exchanges().github_app)
      assert.is_true(exchanges().github_app_refused >= 1)
      no_secrets(r.error, raw, cjson.encode(logs))
    end)

    it("releases a job that times out while it waits on an exchange", function()
      -- The exchange hangs: the job's deadline ends it while it waits; the
      -- runtime must take it off the waiter list (no crash, no use after free)
      -- and a later job exchanges normally.
      sim:fault{ path_prefix = "/app/installations", mode = "hang", count = 1 }
      local waiting = collect_opts(github_doc(app_key))
      waiting.timeout_ms = 500
      local r = T.run(waiting)
      assert.are.equal("failed", r.status)
      assert.matches("timed out", r.error, 1, true)
      sim:clear_faults()
      local r2 = T.run(collect_opts(github_doc(app_key)))
      assert.are.equal("succeeded", r2.status, r2.error)
      assert.are.equal(1, exchanges().github_app)
    end)

    it("refuses an exchange host outside the egress list", function()
      local doc = cjson.encode({ app_id = APP_ID, private_key = app_key, installation_id = "1",
                                 api_base = sim:url():gsub("127%.0%.0%.1", "localhost") })
      local r = T.run(collect_opts(doc))
      assert.are.equal("failed", r.status)
      assert.matches("not in the connector's egress list", r.error, 1, true)
      assert.are.equal(0, exchanges().github_app + exchanges().github_app_refused)
      no_secrets(r.error)
    end)

    it("rejects an invalid document without echoing the key", function()
      local ok, err = pcall(T.run, collect_opts(cjson.encode({ app_id = APP_ID,
        private_key = "not a key CANARYGRANT", installation_id = "1" })))
      assert.is_false(ok)
      assert.matches("field 'private_key' is not a usable private key", err, 1, true)
      no_secrets(err)
    end)
  end)

  describe("client_credentials", function()
    -- A script connector calling the simulator's /user a few times.
    local function run_user(doc, n)
      return T.run(tokens.user_job(sim, doc, "client_credentials", n or 5))
    end

    it("obtains a token with client_secret_basic and sends it", function()
      local r, logs, raw = run_user(cjson.encode({ client_id = CLIENT_ID,
        client_secret = CLIENT_SECRET, token_url = sim:url("/oauth/token"), scope = "read" }))
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(5, #r.result)
      assert.is_string(r.result[1])
      assert.are.equal(1, exchanges().client_credentials)
      no_secrets(raw, cjson.encode(r.result), cjson.encode(logs))
    end)

    it("obtains a token with private_key_jwt and sends it", function()
      local r, logs, raw = run_user(cjson.encode({ client_id = CLIENT_ID,
        private_key = client_key, token_url = sim:url("/oauth/token") }))
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(5, #r.result)
      assert.are.equal(1, exchanges().client_credentials)
      no_secrets(raw, cjson.encode(r.result), cjson.encode(logs))
    end)

    it("reports a refused client without its secret", function()
      local r = run_user(cjson.encode({ client_id = CLIENT_ID,
        client_secret = "CANARYGRANTWRONG", token_url = sim:url("/oauth/token") }))
      assert.are.equal("failed", r.status)
      assert.matches("client_credentials token exchange failed", r.error, 1, true)
      assert.matches("HTTP 401 (Client authentication failed)", r.error, 1, true)
      assert.are.equal(0, exchanges().client_credentials)
      no_secrets(r.error)
    end)

    it("exchanges again after the provider refuses the token (401), without retrying", function()
      local r = T.run{
        source = ([[ local ctx = ...
          local codes = {}
          codes[1] = assert(ctx.http.get("USER")).status
          assert(ctx.http.post("REVOKE", { auth = false }))
          codes[2] = assert(ctx.http.get("USER")).status
          codes[3] = assert(ctx.http.get("USER")).status
          return codes ]]):gsub("USER", sim:url("/user")):gsub("REVOKE",
            sim:url("/_sim/revoke_exchanged")),
        allow_hosts = { "127.0.0.1" }, credential_type = "client_credentials",
        credential = cjson.encode({ client_id = CLIENT_ID, client_secret = CLIENT_SECRET,
                                    token_url = sim:url("/oauth/token") }),
      }
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.same({ 200, 401, 200 }, r.result)
      assert.are.equal(2, exchanges().client_credentials)
    end)

    it("single-flights concurrent jobs", function()
      local doc = cjson.encode({ client_id = CLIENT_ID, private_key = client_key,
        token_url = sim:url("/oauth/token") })
      local list = {}
      for i = 1, 10 do
        local o = {
          source = ([[ local ctx = ...
            local res = assert(ctx.http.get("URL"))
            assert(res.status == 200, "HTTP " .. res.status)
            return true ]]):gsub("URL", sim:url("/user")),
          allow_hosts = { "127.0.0.1" }, credential = doc,
          credential_type = "client_credentials",
        }
        list[i] = o
      end
      local results = T.run(list)
      for _, r in ipairs(results) do assert.are.equal("succeeded", r.status, r.error) end
      assert.are.equal(1, exchanges().client_credentials)
    end)
  end)

  describe("through the binary (creds put, collect --credential)", function()
    it("stores a github_app credential and collects with one exchange", function()
      local id = vault:put("github", "github_app", github_doc(app_key, "7"), no_secrets)
      local code, out, err = vault:collect(FILE, config(), id)
      assert.are.equal(0, code, err)
      local items = lines(out)
      assert.is_true(#items > REPOS)
      assert.are.equal(1, exchanges().github_app)
      assert.is_true(sim:stats().total > REPOS)
      no_secrets(out, err)
      no_secrets(vault:stored())
    end)
  end)
end)
