-- The provider simulator (tools/simulator) as a child process for one spec
-- file:
--
--   local simulator = require "helpers.simulator"
--   local sim = simulator.start{ members = 2500, repos = 1200, tokens = { "sim-token" } }
--   sim:url("/orgs/acme")             -- http://127.0.0.1:PORT/orgs/acme
--   sim:fault{ path_prefix = "/orgs/acme/members", mode = "server_error", count = 1 }
--   sim:stats(), sim:dataset(), sim:reset(), sim:stop()
--
-- It runs with --exit-on-stdin-close under helpers.peer, so it exits with the
-- spec process even when the spec dies before stop(). Paths are relative to the repository root, where
-- `junction spec` runs. Control requests use curl.
local cjson = require "cjson"
local peer = require "helpers.peer"

local _M = {}
local Simulator = {}
Simulator.__index = Simulator

local shell_quote = peer.shell_quote

-- opts: members, repos, seed, orgs (list), tokens (list), args (extra flags);
-- the OAuth client its POST /oauth/token accepts: client_id, client_secret,
-- client_key_file (the public key of its private_key_jwt assertions), and
-- refresh_token (the initial one of grant_type=refresh_token, rotated on
-- every refresh as Jira does).
function _M.start(opts)
  opts = opts or {}
  local argv = { "node", "tools/simulator/server.js", "--port", "0", "--exit-on-stdin-close" }
  local function flag(name, value)
    if value ~= nil then argv[#argv + 1] = name; argv[#argv + 1] = tostring(value) end
  end
  flag("--members", opts.members)
  flag("--repos", opts.repos)
  flag("--seed", opts.seed)
  flag("--orgs", opts.orgs and table.concat(opts.orgs, ","))
  flag("--token", opts.tokens and table.concat(opts.tokens, ","))
  flag("--client-id", opts.client_id)
  flag("--client-secret", opts.client_secret)
  flag("--client-key-file", opts.client_key_file)
  flag("--refresh-token", opts.refresh_token)
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end

  return setmetatable(peer.spawn(argv), Simulator)
end

function Simulator:url(path)
  return "http://127.0.0.1:" .. self.port .. (path or "")
end

-- One HTTP request with curl; returns status, body text.
function Simulator:request(method, path, body, headers)
  local cmd = { "curl -sS --max-time 30 -o - -w '\\n%{http_code}' -X", method }
  for _, h in ipairs(headers or {}) do cmd[#cmd + 1] = "-H " .. shell_quote(h) end
  if body ~= nil then
    cmd[#cmd + 1] = "-H 'content-type: application/json' --data-binary " ..
        shell_quote(type(body) == "string" and body or cjson.encode(body))
  end
  cmd[#cmd + 1] = shell_quote(self:url(path))
  local p = assert(io.popen(table.concat(cmd, " ")))
  local text = p:read("*a")
  p:close()
  local content, code = text:match("^(.*)\n(%d+)$")
  return tonumber(code), content
end

local function control(self, method, path, body)
  local status, text = self:request(method, path, body)
  if not status or status >= 300 then
    error(string.format("simulator %s %s: HTTP %s %s", method, path, tostring(status),
      tostring(text)), 3)
  end
  return cjson.decode(text)
end

-- Arms a fault: { path_prefix, mode, count, after, query, status, retry_after, bytes, interval_ms }
function Simulator:fault(spec) return control(self, "POST", "/_sim/faults", spec) end
function Simulator:clear_faults() return control(self, "DELETE", "/_sim/faults") end
function Simulator:stats() return control(self, "GET", "/_sim/stats") end
function Simulator:dataset() return control(self, "GET", "/_sim/dataset") end
-- Arrival times (epoch ms) of the API requests since the last reset, oldest first.
function Simulator:arrivals() return control(self, "GET", "/_sim/arrivals").arrivals end
-- { token, limit, remaining, reset_in_seconds }
function Simulator:rate_limit(spec) return control(self, "POST", "/_sim/rate_limit", spec) end

-- The lifetime (expires_in, seconds; enforced) of the access tokens
-- /oauth/token hands out from now on; nil: the default again.
function Simulator:token_ttl(seconds)
  return control(self, "POST", "/_sim/token_ttl", { seconds = seconds or cjson.null })
end
-- Every token handed out by an exchange expires now (each later use: 401).
function Simulator:expire_exchanged() return control(self, "POST", "/_sim/expire_exchanged") end
-- The exchanged tokens since the last reset, in order of issue (never the
-- token itself): { n, grant, expires_in, uses, expired_uses, live }.
function Simulator:tokens() return self:stats().tokens end

-- Statistics and rate-limit budgets start over; armed faults are cleared.
function Simulator:reset()
  control(self, "POST", "/_sim/reset")
  self:clear_faults()
end

-- GET an API path as a client would; returns status, decoded body (or nil).
function Simulator:api(path, token)
  local status, text = self:request("GET", path, nil, {
    "Authorization: Bearer " .. (token or "sim-token"),
    "Accept: application/vnd.github+json",
  })
  local ok, body = pcall(cjson.decode, text or "")
  return status, ok and body or nil
end

-- Every element of a paginated listing (follows page numbers).
function Simulator:api_list(path, token)
  local all, page = {}, 1
  local sep = path:find("?", 1, true) and "&" or "?"
  repeat
    local status, body = self:api(path .. sep .. "per_page=100&page=" .. page, token)
    assert(status == 200, "simulator GET " .. path .. ": HTTP " .. tostring(status))
    for _, v in ipairs(body) do all[#all + 1] = v end
    page = page + 1
  until #body < 100
  return all
end

function Simulator:stop()
  peer.stop(self)
end

return _M
