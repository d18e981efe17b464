-- What the token and credential specs share: a vault driven through the
-- binary (`creds put`, `creds list`, `collect --credential`), the token
-- endpoint peers of tools/oidc, the connector that asks such a peer whom its
-- token belongs to, and leak checks.
--
--   local tokens = require "helpers.tokens"
--   local vault = tokens.vault()                  -- dir, data, keyfile, cli(...)
--   local id = vault:put("github", "oauth2", doc, no_secrets)
--   local code, out, err = vault:collect("connectors/github.lua", config, id)
--   vault:versions(id)                             -- { [1] = "previous", [2] = "current" }
--   local oidc = tokens.oidc_provider(vault.dir, clients)
--   oidc:mint_refresh_token(client_id), oidc:token_requests()
--   vault:cleanup()
local cjson = require "cjson"
local assert = require "luassert"
local peer = require "helpers.peer"
local util = require "helpers.util"

local BIN = os.getenv("JUNCTION_BIN") or "./build/junction"
local shell_quote, sh, read_file = util.shell_quote, util.sh, util.read_file

local _M = {}

-- A function(...) that asserts that none of the needles appears in any of
-- the texts it is given. checks: a list of { needle, message }, where needle
-- is a string or a list of strings read at each call (e.g. the key marks a
-- spec's setup fills in later).
function _M.no_secrets(checks)
  return function(...)
    for _, text in ipairs({ ... }) do
      for _, c in ipairs(checks) do
        local needles = type(c[1]) == "table" and c[1] or { c[1] }
        for _, needle in ipairs(needles) do
          assert.is_nil(text:find(needle, 1, true), c[2])
        end
      end
    end
  end
end

local Vault = {}
Vault.__index = Vault

-- A temporary directory with a data directory and a master key file (0600);
-- cli(...) runs the binary on that vault (util.vault_cli) and returns the
-- exit code, stdout and stderr.
function _M.vault()
  local self = setmetatable({}, Vault)
  self.dir = sh("mktemp -d"):gsub("%s+$", "")
  self.data = self.dir .. "/data"
  self.keyfile = util.master_keyfile(self.dir .. "/master.keys")
  self.cli = util.vault_cli(BIN, self.keyfile, self.data, self.dir)
  return self
end

-- `creds put` of doc (a table, or its JSON text) for organization acme
-- (opts.org another), from a 0600 file that is removed afterwards. It must
-- succeed; check(out, err), when given, then looks at what it printed.
-- Returns the credential's id, stdout and stderr.
function Vault:put(provider, auth_type, doc, check, opts)
  local path = self.dir .. "/credential.json"
  util.write_file(path, type(doc) == "string" and doc or cjson.encode(doc))
  local code, out, err = self.cli("creds", "put", "--org", (opts and opts.org) or "acme",
    "--provider", provider, "--auth-type", auth_type, "--from-file", path)
  os.remove(path)
  assert.are.equal(0, code, err)
  if check then check(out, err) end
  return cjson.decode(util.lines(out)[1]).id, out, err
end

-- `collect <connector> --config <config> --credential <id>` for organization
-- acme (org another), the peers on 127.0.0.1 allowed; config is a table or
-- its JSON text. Returns the exit code, stdout and stderr.
function Vault:collect(connector, config, id, org)
  return self.cli("collect", connector, "--config",
    type(config) == "string" and config or cjson.encode(config), "--allow-host", "127.0.0.1",
    "--org", org or "acme", "--credential", id)
end

-- `creds list` of organization acme (or org), which must succeed: the
-- entries by credential id, and the listing's text; check(out, err), when
-- given, looks at what it printed.
function Vault:listing(org, check)
  local code, out, err = self.cli("creds", "list", "--org", org or "acme")
  assert.are.equal(0, code, err)
  if check then check(out, err) end
  local by_id = {}
  for _, line in ipairs(util.lines(out)) do
    local c = cjson.decode(line)
    by_id[c.id] = c
  end
  return by_id, out
end

-- The `creds list` entry of credential id (organization acme, or org), and
-- the whole listing; check(out, err) as for listing.
function Vault:listed(id, check, org)
  local by_id, out = self:listing(org, check)
  if by_id[id] then return by_id[id], out end
  error("credential " .. id .. " is not listed: " .. out)
end

-- The state of each version of credential id: { [version] = state }.
function Vault:versions(id, check)
  local s = {}
  for _, v in ipairs((self:listed(id, check)).versions) do s[v.version] = v.state end
  return s
end

-- The texts of the store's files (database, WAL, shared memory), for leak
-- checks: no_secrets(vault:stored()).
function Vault:stored()
  local d = self.data .. "/"
  return read_file(d .. "junction.db"), read_file(d .. "junction.db-wal"),
    read_file(d .. "junction.db-shm")
end

function Vault:cleanup()
  os.execute("rm -rf " .. shell_quote(self.dir))
end

-- For teardown: stops each peer or simulator and removes each vault given
-- (nil where setup did not get that far).
function _M.stop(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if getmetatable(v) == Vault then v:cleanup() elseif v then v:stop() end
  end
end

-- The source of a connector of the given provider type that GETs
-- config.base_url .. "/_test/whoami" with its credential and emits what the
-- token endpoint peer says of the token, as one item <provider>.token whose
-- resource id is that answer's field opts.id_field. opts: provider,
-- display_name, description, auth_types (a list), id_field.
function _M.whoami_connector(opts)
  local auth = {}
  for i, a in ipairs(opts.auth_types) do auth[i] = string.format("%q", a) end
  return (([[
local c = connector {
  provider_type = "PROVIDER",
  display_name = DISPLAY,
  description = DESCRIPTION,
  version = "1.0.0",
  auth_types = { AUTH },
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
  ctx.emit{ resource_type = "PROVIDER.token", resource_id = who.ID_FIELD, data = who }
end
return c
]]):gsub("[%u_]+", {
    PROVIDER = opts.provider, DISPLAY = string.format("%q", opts.display_name),
    DESCRIPTION = string.format("%q", opts.description), AUTH = table.concat(auth, ", "),
    ID_FIELD = opts.id_field,
  }))
end

-- A testing.run job: a script that GETs the simulator's /user n times with
-- the credential doc (its JSON text) of auth_type, and returns the logins.
-- A request that fails or answers anything but 200 fails the job.
function _M.user_job(sim, doc, auth_type, n)
  return {
    source = ([[
      local ctx = ...
      local logins = {}
      for i = 1, N do
        local res, err = ctx.http.get("URL")
        if not res then error(err) end
        if res.status ~= 200 then error("HTTP " .. res.status) end
        logins[#logins + 1] = res:json().login
      end
      return logins
    ]]):gsub("URL", sim:url("/user")):gsub("N", tostring(n)),
    allow_hosts = { "127.0.0.1" }, credential = doc, credential_type = auth_type,
  }
end

-- GET (or method) a test route of a peer: the decoded JSON answer.
local function peer_json(self, path, method)
  local out = sh("curl -sS -X " .. (method or "GET") .. " " .. shell_quote(self:url(path)))
  local ok, v = pcall(cjson.decode, out)
  assert(ok, "the peer's " .. path .. " answered " .. out)
  return v
end

-- The oidc-provider peer's npm packages must be installed (tools/test does
-- it): fail, do not skip, when they are not.
local function require_oidc_packages()
  local f = io.open("tools/oidc/node_modules/oidc-provider/package.json", "rb")
  if not f then
    error("the oidc-provider test peer is not installed: run " ..
      "`npm ci --prefix tools/oidc --no-audit --no-fund` (tools/test does)", 0)
  end
  local version = cjson.decode(f:read("*a")).version
  f:close()
  assert(version:match("^8%."), "tools/oidc: expected oidc-provider 8.x, found " .. version)
end

-- oidc-provider (tools/oidc/server.js), a real authorization server, with the
-- given clients (oidc-provider client metadata; "jwks_pem" names a public
-- key file), its configuration written into dir. A peer (helpers.peer) with
-- the server's test routes:
--   json(path, method)                  any test route's decoded answer
--   mint_refresh_token(client_id, ttl)  a refresh token minted server-side
--   refresh_token_state(token)          { found, consumed }
--   token_requests()                    the POST /token requests so far
--   issued(client_id)                   what the provider issued to the client
function _M.oidc_provider(dir, clients)
  require_oidc_packages()
  local config = dir .. "/oidc-clients.json"
  util.write_file(config, cjson.encode({ clients = clients }))
  local p = peer.start("tools/oidc/server.js", { "--config", config })
  p.json = peer_json
  function p:mint_refresh_token(client_id, ttl)
    return assert(self:json("/_test/refresh_token?client_id=" .. client_id ..
      (ttl and ("&ttl=" .. ttl) or ""), "POST").refresh_token)
  end
  function p:refresh_token_state(token)
    return self:json("/_test/refresh_token_state?token=" .. token)
  end
  function p:token_requests() return self:json("/_test/token_requests").count end
  function p:issued(client_id) return self:json("/_test/issued?client_id=" .. client_id) end
  return p
end

-- The JWT bearer token endpoint whose assertion checks are jose's
-- (tools/oidc/jwt_bearer_peer.js), with the given issuers ({ iss,
-- public_key, audience, max_lifetime, salesforce }), its configuration
-- written into dir. A peer (helpers.peer) with json(path): a test route's
-- decoded answer (/_test/stats, /_test/reverify?at=...).
function _M.jwt_bearer_peer(dir, issuers)
  local config = dir .. "/jwt-issuers.json"
  util.write_file(config, cjson.encode({ issuers = issuers }))
  local p = peer.start("tools/oidc/jwt_bearer_peer.js", { "--config", config })
  p.json = peer_json
  return p
end

return _M
