-- The JWT bearer grant (RFC 7523) end to end against the simulator: Google
-- service accounts (auth type service_account, the key file as Google issues
-- it) and Salesforce's JWT bearer flow (auth type jwt_bearer). The core signs
-- the assertion and exchanges it at the token URL; the exchange is single
-- flight, and neither the private key nor the exchanged token appears in
-- results or logs.
local T = require "junction.testing"
local cjson = require "cjson"
local simulator = require "helpers.simulator"
local tokens = require "helpers.tokens"
local util = require "helpers.util"

local shell_quote, sh, lines = util.shell_quote, util.sh, util.lines

local CLIENT_EMAIL = "junction-spec@acme-project.iam.gserviceaccount.com"
local CONSUMER_KEY = "3MVG9junctionSpecConsumerKey"
local SF_AUDIENCE = "https://login.salesforce.com"

describe("JWT bearer grant", function()
  local sim, dir
  local bearer_key, wrong_key -- PEM private keys
  local key_marks = {}        -- a base64 line from each private key

  local function genkey(name)
    local pem, pub, mark = util.genkey(dir, name)
    key_marks[#key_marks + 1] = mark
    return pem, pub
  end

  local no_secrets = tokens.no_secrets{
    { "PRIVATE KEY", "a private key leaked" }, { key_marks, "a private key leaked" },
    { "sim_jb_", "an access token leaked" },
  }

  local function exchanges()
    return sim:stats().exchanges
  end

  -- A service-account key file in Google's shape, pointed at the simulator.
  local function google_doc(key)
    return cjson.encode({
      type = "service_account",
      project_id = "acme-project",
      private_key_id = "0123456789abcdef0123456789abcdef01234567",
      private_key = key,
      client_email = CLIENT_EMAIL,
      client_id = "112233445566778899001",
      auth_uri = "https://accounts.google.com/o/oauth2/auth",
      token_uri = sim:url("/oauth/token"),
      auth_provider_x509_cert_url = "https://www.googleapis.com/oauth2/v1/certs",
      client_x509_cert_url = "https://www.googleapis.com/robot/v1/metadata/x509/junction-spec",
      universe_domain = "googleapis.com",
      scopes = "https://www.googleapis.com/auth/admin.directory.user.readonly " ..
        "https://www.googleapis.com/auth/cloud-platform.read-only",
    })
  end

  local function salesforce_doc(key)
    return cjson.encode({ consumer_key = CONSUMER_KEY, username = "integration@acme.example",
                          private_key = key, token_url = sim:url("/oauth/token") })
  end

  -- Script connector jobs that each call the simulator's /user n times.
  local function user_job(doc, auth_type, n)
    return tokens.user_job(sim, doc, auth_type, n or 3)
  end

  setup(function()
    dir = sh("mktemp -d"):gsub("%s+$", "")
    local pub
    bearer_key, pub = genkey("bearer")
    wrong_key = genkey("wrong")
    sim = simulator.start{ members = 5, repos = 5, tokens = { "sim-token" },
      args = { "--bearer-key-file", pub, "--bearer-audience", SF_AUDIENCE,
               "--bearer-issuer", CLIENT_EMAIL .. "," .. CONSUMER_KEY } }
  end)

  teardown(function()
    if sim then sim:stop() end
    if dir then os.execute("rm -rf " .. shell_quote(dir)) end
  end)

  before_each(function() sim:reset() end)

  describe("service_account", function()
    it("serves 10 concurrent jobs with one exchange", function()
      local doc = google_doc(bearer_key)
      local list = {}
      for i = 1, 10 do list[i] = user_job(doc, "service_account") end
      local results, logs, raw = T.run(list)
      for _, r in ipairs(results) do
        assert.are.equal("succeeded", r.status, r.error)
        assert.are.equal(3, #r.result)
        assert.is_string(r.result[1])
        no_secrets(cjson.encode(r.result))
      end
      assert.are.equal(1, exchanges().jwt_bearer)
      assert.are.equal(0, exchanges().jwt_bearer_refused)
      no_secrets(raw, cjson.encode(logs))
    end)

    it("fails with a clear 401, without secrets, when the key is wrong", function()
      local r, logs, raw = T.run(user_job(google_doc(wrong_key), "service_account"))
      assert.are.equal("failed", r.status)
      assert.matches("service_account token exchange failed", r.error, 1, true)
      assert.matches("POST " .. sim:url("/oauth/token"), r.error, 1, true)
      assert.matches("HTTP 401 (Invalid JWT Signature.)", r.error, 1, true)
      assert.are.equal(0, exchanges().jwt_bearer)
      assert.is_true(exchanges().jwt_bearer_refused >= 1)
      no_secrets(r.error, raw, cjson.encode(logs))
    end)

    it("refuses an exchange host outside the egress list", function()
      local doc = cjson.decode(google_doc(bearer_key))
      doc.token_uri = doc.token_uri:gsub("127%.0%.0%.1", "localhost")
      local r = T.run(user_job(cjson.encode(doc), "service_account"))
      assert.are.equal("failed", r.status)
      assert.matches("not in the connector's egress list", r.error, 1, true)
      assert.are.equal(0, exchanges().jwt_bearer + exchanges().jwt_bearer_refused)
      no_secrets(r.error)
    end)

    it("rejects an invalid document without echoing the key", function()
      local doc = cjson.decode(google_doc(bearer_key))
      doc.scopes = nil
      local ok, err = pcall(T.run, user_job(cjson.encode(doc), "service_account"))
      assert.is_false(ok)
      assert.matches("service_account credential: field 'scopes' is required", err, 1, true)
      no_secrets(err)
    end)
  end)

  describe("jwt_bearer (Salesforce)", function()
    it("obtains a token with the default audience and sends it", function()
      local r, logs, raw = T.run(user_job(salesforce_doc(bearer_key), "jwt_bearer", 5))
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.equal(5, #r.result)
      assert.are.equal(1, exchanges().jwt_bearer)
      no_secrets(raw, cjson.encode(r.result), cjson.encode(logs))
    end)

    it("fails with a clear 401, without secrets, when the key is wrong", function()
      local r, logs, raw = T.run(user_job(salesforce_doc(wrong_key), "jwt_bearer"))
      assert.are.equal("failed", r.status)
      assert.matches("jwt_bearer token exchange failed", r.error, 1, true)
      assert.matches("HTTP 401", r.error, 1, true)
      assert.are.equal(0, exchanges().jwt_bearer)
      no_secrets(r.error, raw, cjson.encode(logs))
    end)

    it("is refused when the audience is not the provider's", function()
      local doc = cjson.decode(salesforce_doc(bearer_key))
      doc.audience = "https://test.salesforce.com"
      local r = T.run(user_job(cjson.encode(doc), "jwt_bearer"))
      assert.are.equal("failed", r.status)
      assert.matches("HTTP 401 (Invalid JWT: audience)", r.error, 1, true)
      no_secrets(r.error)
    end)
  end)
end)

-- Through the binary: a Google service-account key file and a Salesforce
-- JWT-bearer document stored with `junction creds put` and used by
-- `junction collect --credential`. The token endpoint is
-- tools/oidc/jwt_bearer_peer.js, which verifies each assertion with the npm
-- JOSE library jose (an implementation independent of Junction's):
-- signature, issuer, audience and expiry, and for Google exp - iat <= 1 h.
describe("JWT bearer grant through the binary, verified by jose", function()
  local SA_EMAIL = "junction-binary@acme-project.iam.gserviceaccount.com"
  local SF_KEY = "3MVG9junctionBinaryConsumerKey"
  local SF_AUD = "https://login.salesforce.com"
  local DELEGATE = "admin@acme.example"
  local server, vault, sa_key, sf_key, connector
  local marks = {}

  local function url(path) return server:url(path) end
  local function get(path) return server:json(path) end

  local no_secrets = tokens.no_secrets{
    { "PRIVATE KEY", "a private key leaked" }, { marks, "a private key leaked" },
    { "jp_at_", "an access token leaked" },
  }

  local function put(auth_type, doc)
    return (vault:put("jwt_peer", auth_type, doc, no_secrets))
  end

  local function collect(id)
    return vault:collect(connector, { base_url = url() }, id)
  end

  setup(function()
    vault = tokens.vault()
    local sa_pub, sf_pub, mark
    sa_key, sa_pub, mark = util.genkey(vault.dir, "sa")
    marks[#marks + 1] = mark
    sf_key, sf_pub, mark = util.genkey(vault.dir, "sf")
    marks[#marks + 1] = mark
    server = tokens.jwt_bearer_peer(vault.dir, {
      { iss = SA_EMAIL, public_key = sa_pub, audience = "token_url", max_lifetime = 3600 },
      { iss = SF_KEY, public_key = sf_pub, audience = SF_AUD, salesforce = true },
    })
    connector = vault.dir .. "/whoami.lua"
    util.write_file(connector, tokens.whoami_connector{ provider = "jwt_peer",
      display_name = "JWT bearer peer",
      description = "Asks the JWT bearer test peer which verified assertion its token came from",
      auth_types = { "service_account", "jwt_bearer" }, id_field = "iss" })
  end)

  teardown(function() tokens.stop(server, vault) end)

  it("uses a Google service account with domain-wide delegation; jose verifies aud and exp",
     function()
    local id = put("service_account", {
      type = "service_account", project_id = "acme-project",
      private_key_id = "0123456789abcdef0123456789abcdef01234567", private_key = sa_key,
      client_email = SA_EMAIL, client_id = "112233445566778899001", token_uri = url("/token"),
      scopes = "https://www.googleapis.com/auth/admin.directory.user.readonly",
      subject = DELEGATE })
    local before = get("/_test/stats")
    local code, out, err = collect(id)
    assert.are.equal(0, code, err)
    no_secrets(out, err)
    local items = lines(out)
    assert.are.equal(1, #items)
    local who = cjson.decode(items[1]).data
    assert.are.same({ iss = SA_EMAIL, sub = DELEGATE, aud = url("/token"),
                      scope = "https://www.googleapis.com/auth/admin.directory.user.readonly" },
                    who)
    assert.are.equal(before.exchanges + 1, get("/_test/stats").exchanges)
    -- jose again, on the same assertion: valid now, expired an hour and a
    -- minute from now (the assertion lives at most 1 h).
    local now = tonumber(sh("date +%s"):match("%d+"))
    assert.are.same({ ok = true, code = cjson.null }, get("/_test/reverify?at=" .. now))
    assert.are.same({ ok = false, code = "ERR_JWT_EXPIRED" },
      get("/_test/reverify?at=" .. (now + 3660)))
    no_secrets(vault:stored())
  end)

  it("uses a Salesforce JWT-bearer credential; jose verifies aud and exp", function()
    local id = put("jwt_bearer", { consumer_key = SF_KEY, username = "integration@acme.example",
                                   private_key = sf_key, token_url = url("/token") })
    local code, out, err = collect(id)
    assert.are.equal(0, code, err)
    no_secrets(out, err)
    local who = cjson.decode(lines(out)[1]).data
    assert.are.same({ iss = SF_KEY, sub = "integration@acme.example", aud = SF_AUD,
                      scope = cjson.null }, who)
    local now = tonumber(sh("date +%s"):match("%d+"))
    assert.are.same({ ok = true, code = cjson.null }, get("/_test/reverify?at=" .. now))
    -- Salesforce assertions live 3 minutes
    assert.are.same({ ok = false, code = "ERR_JWT_EXPIRED" },
      get("/_test/reverify?at=" .. (now + 600)))
  end)

  it("is refused by jose when the audience is not the provider's, without secrets", function()
    local id = put("jwt_bearer", { consumer_key = SF_KEY, username = "integration@acme.example",
                                   private_key = sf_key, token_url = url("/token"),
                                   audience = "https://test.salesforce.com" })
    local before = get("/_test/stats")
    local code, out, err = collect(id)
    assert.are_not.equal(0, code)
    assert.matches("jwt_bearer token exchange failed", err, 1, true)
    -- (the log line is JSON: its quotes are escaped)
    assert.matches([[HTTP 400 (ERR_JWT_CLAIM_VALIDATION_FAILED: unexpected \"aud\" claim value)]],
      err, 1, true)
    assert.are.equal(before.refused + 1, get("/_test/stats").refused)
    no_secrets(out, err)
  end)
end)
