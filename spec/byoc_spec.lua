-- Bring-your-own OAuth clients through the binary: an organization stores its
-- own OAuth client for a provider (`creds put --auth-type oauth_client`), and
-- its oauth2 and client_credentials credentials that name no client_id
-- exchange with it; an organization without one gets the platform default
-- (an oauth_client in the reserved organization _platform); without either
-- the exchange fails with a message that says what to store. Each simulator
-- accepts exactly one client, so a successful exchange proves which client
-- was used. `creds list` names the client (ids only), the audit log records
-- each use, and no client secret, refresh token or access token appears in
-- any output, log or the database. ctest sets JUNCTION_BIN.
local T = require "junction.testing"
local cjson = require "cjson"
local simulator = require "helpers.simulator"
local tokens = require "helpers.tokens"
local util = require "helpers.util"

local FILE = "connectors/github.lua"
local ORG_CLIENT, ORG_SECRET = "acme-own-client", "CANARYBYOC-org-secret-0123456789"
local PLATFORM_CLIENT, PLATFORM_SECRET = "platform-client", "CANARYBYOC-platform-secret-98765"
local ORG_REFRESH = "CANARYBYOC-org-refresh-0123456789"
local PLATFORM_REFRESH = "CANARYBYOC-platform-refresh-0123456789"

local shell_quote, sh, read_file, write_file, lines =
  util.shell_quote, util.sh, util.read_file, util.write_file, util.lines

local function no_secrets(...)
  for _, text in ipairs({ ... }) do
    assert.is_nil(text:find("CANARYBYOC", 1, true), "a client secret or refresh token leaked")
    assert.is_nil(text:find("sim_rt_", 1, true), "a rotated refresh token leaked")
    assert.is_nil(text:find("sim_at_", 1, true), "an access token leaked")
    assert.is_nil(text:find("sim_cc_", 1, true), "an access token leaked")
  end
end

describe("bring-your-own OAuth clients (oauth_client)", function()
  local org_sim, platform_sim, vault, dir, data, junction
  local outputs = {}
  local org_client, org_grant -- acme's client and oauth2 credential (first test)

  -- Keeps what the binary printed for the final leak check, and checks it.
  local function keep(out, err)
    outputs[#outputs + 1] = out
    outputs[#outputs + 1] = err
    no_secrets(out, err)
  end

  -- Runs the binary and keeps what it printed.
  local function run(...)
    local code, out, err = junction(...)
    keep(out, err)
    return code, out, err
  end

  local function put(org, provider, auth_type, doc)
    local path = dir .. "/doc.json"
    write_file(path, cjson.encode(doc))
    return run("creds", "put", "--org", org, "--provider", provider, "--auth-type", auth_type,
      "--from-file", path)
  end

  local function put_ok(org, provider, auth_type, doc)
    local code, out, err = put(org, provider, auth_type, doc)
    assert.are.equal(0, code, err)
    return cjson.decode(lines(out)[1]).id, err
  end

  local function listing(org) return (vault:listing(org, keep)) end

  local function collect(org, id, sim)
    return run("collect", FILE, "--config",
      cjson.encode({ organization = "acme", base_url = sim:url() }), "--allow-host", "127.0.0.1",
      "--org", org, "--credential", id)
  end

  local function audit(sql)
    return sh("sqlite3 " .. shell_quote(data .. "/junction.db") .. " " .. shell_quote(sql))
  end

  setup(function()
    vault = tokens.vault()
    dir, data, junction = vault.dir, vault.data, vault.cli
    org_sim = simulator.start{ members = 5, repos = 5, tokens = { "sim-token" },
      client_id = ORG_CLIENT, client_secret = ORG_SECRET, refresh_token = ORG_REFRESH }
    platform_sim = simulator.start{ members = 5, repos = 5, tokens = { "sim-token" },
      client_id = PLATFORM_CLIENT, client_secret = PLATFORM_SECRET,
      refresh_token = PLATFORM_REFRESH }
  end)

  teardown(function() tokens.stop(org_sim, platform_sim, vault) end)

  it("refreshes an oauth2 credential without client_id with the organization's client",
     function()
    local client = put_ok("acme", "github", "oauth_client", {
      client_id = ORG_CLIENT, client_secret = ORG_SECRET, token_url = org_sim:url("/oauth/token"),
      authorize_url = org_sim:url("/login/oauth/authorize"), scopes = "read:org repo",
      redirect_uri = "https://junction.example.com/oauth/callback" })
    local id, warning = put_ok("acme", "github", "oauth2", { refresh_token = ORG_REFRESH })
    assert.are.equal("", warning)
    org_client, org_grant = client, id

    local l = listing("acme")
    assert.are.same({ source = "organization", organization_id = "acme", id = client },
      l[id].oauth_client)
    assert.are.equal("oauth_client", l[client].auth_type)
    assert.is_nil(l[client].oauth_client)

    local code, out, err = collect("acme", id, org_sim)
    assert.are.equal(0, code, err)
    assert.is_true(#lines(out) > 0)
    local ex = org_sim:stats().exchanges
    assert.are.equal(1, ex.refresh_token)
    assert.are.equal(0, ex.refresh_token_refused)
    -- The rotated refresh token is stored as version 2; the client's fields
    -- are not copied into it (it still follows the organization's client).
    local versions = {}
    for _, v in ipairs(listing("acme")[id].versions) do versions[v.version] = v.state end
    assert.are.equal("current", versions[2])
    code, out, err = collect("acme", id, org_sim)
    assert.are.equal(0, code, err)
    assert.are.equal(2, org_sim:stats().exchanges.refresh_token)

    -- Every use is audited: the client's access in its organization (naming
    -- whose credential it served), and the use in the credential's.
    local rows = audit("SELECT action || '|' || org_id || '|' || credential_id || '|' || actor " ..
      "FROM audit_log WHERE action IN ('oauth_client.use', 'credential.access') ORDER BY seq")
    assert.is_truthy(rows:find("oauth_client.use|acme|" .. id .. "|collect:" .. FILE, 1, true),
      rows)
    assert.is_truthy(rows:find("credential.access|acme|" .. client .. "|collect:" .. FILE ..
      " (oauth_client of acme/" .. id .. ")", 1, true), rows)
    code, out, err = run("audit", "verify")
    assert.are.equal(0, code, err)
  end)

  it("exchanges client_credentials without client_id with the organization's client", function()
    local id = put_ok("acme", "github", "client_credentials", {})
    assert.are.same("organization", listing("acme")[id].oauth_client.source)
    local before = org_sim:stats().exchanges.client_credentials
    local code, out, err = collect("acme", id, org_sim)
    assert.are.equal(0, code, err)
    assert.is_true(#lines(out) > 0)
    assert.are.equal(before + 1, org_sim:stats().exchanges.client_credentials)
  end)

  it("uses the platform default client for an organization without its own", function()
    -- The reserved organization holds only OAuth clients.
    local code, _, err = put("_platform", "github", "api_key", { token = "CANARYBYOC-x" })
    assert.are.equal(2, code)
    assert.matches("organization '_platform' is reserved for the platform's default OAuth " ..
      "clients", err, 1, true)

    local platform = put_ok("_platform", "github", "oauth_client", {
      client_id = PLATFORM_CLIENT, client_secret = PLATFORM_SECRET,
      token_url = platform_sim:url("/oauth/token") })
    local id = put_ok("globex", "github", "oauth2", { refresh_token = PLATFORM_REFRESH })
    assert.are.same({ source = "platform", organization_id = "_platform", id = platform },
      listing("globex")[id].oauth_client)
    -- An organization with its own client keeps using it.
    for _, c in pairs(listing("acme")) do
      if c.auth_type == "oauth2" then assert.are.equal("organization", c.oauth_client.source) end
    end

    code, _, err = collect("globex", id, platform_sim)
    assert.are.equal(0, code, err)
    assert.are.equal(1, platform_sim:stats().exchanges.refresh_token)
    assert.are.equal(0, platform_sim:stats().exchanges.refresh_token_refused)
    local rows = audit("SELECT org_id || '|' || credential_id || '|' || detail_json FROM " ..
      "audit_log WHERE action = 'oauth_client.use' AND org_id = 'globex'")
    assert.is_truthy(rows:find('"client_organization":"_platform","client_credential":"' ..
      platform .. '"', 1, true), rows)
  end)

  it("refuses a second client per provider, bad documents, and fails precisely without one",
     function()
    local code, _, err = put("acme", "github", "oauth_client", { client_id = "another" })
    assert.are.equal(2, code)
    assert.matches("organization 'acme' already has an oauth_client for provider 'github'", err,
      1, true)
    code, _, err = put("acme", "jira", "oauth_client", { client_id = "c",
      client_secret = "CANARYBYOC-s", redirect_uri = "https://x.example.com/cb#frag" })
    assert.are.equal(2, code)
    assert.matches("oauth_client credential: field 'redirect_uri' must be an http(s) URL " ..
      "without user or fragment", err, 1, true)
    code, _, err = put("acme", "jira", "oauth2", { client_secret = "CANARYBYOC-s",
      refresh_token = "CANARYBYOC-r" })
    assert.are.equal(2, code)
    assert.matches("field 'client_secret' needs 'client_id'", err, 1, true)

    -- No client for jira anywhere: stored with a warning, then a precise error.
    local id, warning = put_ok("acme", "jira", "oauth2", { refresh_token = "CANARYBYOC-jira",
      token_url = org_sim:url("/oauth/token") })
    assert.matches("names no client_id: it uses the oauth_client of organization 'acme' for " ..
      "provider 'jira' (or the platform default), and there is none yet", warning, 1, true)
    assert.are.same({ source = "none" }, listing("acme")[id].oauth_client)
    local out
    code, out, err = collect("acme", id, org_sim)
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.matches("names no OAuth client (no client_id), and there is none to use: " ..
      "organization 'acme' has no oauth_client credential for provider 'jira', nor is there a " ..
      "platform default", err, 1, true)

    -- A document without a client that was never bound (not from the vault).
    local r = T.run{ source = "local ctx = ... return select(2, ctx.http.get('" ..
      org_sim:url("/user") .. "'))", allow_hosts = { "127.0.0.1" }, credential_type = "oauth2",
      credential = cjson.encode({ refresh_token = "CANARYBYOC-unbound",
                                  token_url = org_sim:url("/oauth/token") }) }
    assert.are.equal("succeeded", r.status, r.error)
    assert.matches("oauth2 token exchange: the credential names no OAuth client (no client_id) " ..
      "and none was bound to it", r.result, 1, true)
    no_secrets(r.result)
  end)

  it("falls back to the platform client when the organization's goes, its own fields kept apart",
     function()
    -- The refresh tokens stored back hold the credential's own fields only:
    -- without acme's client the credential follows the platform default.
    local code, _, err = run("creds", "rm", "--org", "acme", "--id", org_client)
    assert.are.equal(0, code, err)
    assert.are.equal("platform", listing("acme")[org_grant].oauth_client.source)
    local refused = platform_sim:stats().exchanges.refresh_token_refused
    local out
    code, out, err = collect("acme", org_grant, org_sim)
    assert.are.equal(1, code)
    assert.are.equal("", out)
    -- acme's refresh token went to the platform client's token URL, which
    -- does not know it.
    assert.matches("oauth2 token exchange failed: POST " .. platform_sim:url("/oauth/token") ..
      ": HTTP 400 (invalid_grant)", err, 1, true)
    assert.are.equal(refused + 1, platform_sim:stats().exchanges.refresh_token_refused)
  end)

  it("keeps every secret out of outputs and the database", function()
    for _, text in ipairs(outputs) do no_secrets(text) end
    for _, f in ipairs({ "junction.db", "junction.db-wal" }) do
      no_secrets(read_file(data .. "/" .. f))
    end
  end)
end)
