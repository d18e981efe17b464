-- Small shell and file helpers shared by the specs that drive the binary.
local cjson = require "cjson"
local luassert = require "luassert"
local peer = require "helpers.peer"

local _M = {}

_M.shell_quote = peer.shell_quote

-- Run a shell command; returns its standard output.
function _M.sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

-- The file's bytes, or "" when it does not exist.
function _M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local text = f:read("*a")
  f:close()
  return text
end

-- Write a file readable by its owner only (mode "600" unless given).
function _M.write_file(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  os.execute("chmod " .. (mode or "600") .. " " .. _M.shell_quote(path))
end

-- The non-empty lines of a text.
function _M.lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

-- Generate an RSA key pair in dir with the openssl command. Returns the
-- private key PEM, the public key's path, and one base64 line of the private
-- key (to assert it never leaks).
function _M.genkey(dir, name)
  local priv = dir .. "/" .. name .. ".pem"
  local pub = dir .. "/" .. name .. ".pub"
  _M.sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " ..
    _M.shell_quote(priv) .. " 2>/dev/null && openssl pkey -in " .. _M.shell_quote(priv) ..
    " -pubout -out " .. _M.shell_quote(pub) .. " 2>/dev/null")
  local pem = _M.read_file(priv)
  assert(pem:find("PRIVATE KEY", 1, true), "openssl did not write a private key")
  return pem, pub, _M.lines(pem)[3]
end

-- One line of a master key file: the key id and 32 random bytes, base64.
function _M.master_key_line(id)
  return id .. " " .. _M.sh("head -c 32 /dev/urandom | base64"):gsub("%s+", "") .. "\n"
end

-- Writes a master key file (mode 600) holding one key, k1; returns its path.
function _M.master_keyfile(path)
  _M.write_file(path, "# junction master keys\n" .. _M.master_key_line("k1"))
  return path
end

-- The `env ...` prefix (ending in a space) of a command that runs the binary
-- with a vault: the master key file and the data directory set, the other
-- variables that would change them unset, and ctest's Redis fixture variable
-- (JUNCTION_TEST_REDIS_URL, not a configuration key: the binary would refuse
-- it as a mistyped one) unset too. env: overrides of variables (false
-- unsets one).
function _M.vault_env(keyfile, data, env)
  local vars = { JUNCTION_MASTER_KEY_FILE = keyfile, JUNCTION_DATA_DIR = data }
  for k, v in pairs(env or {}) do vars[k] = v end
  local names = {}
  for k in pairs(vars) do names[#names + 1] = k end
  table.sort(names)
  local cmd = { "env", "-u", "JUNCTION_MASTER_KEY", "-u", "JUNCTION_CONFIG",
                "-u", "JUNCTION_TEST_REDIS_URL" }
  -- env takes every -u before the first assignment
  for _, k in ipairs(names) do
    if not vars[k] then cmd[#cmd + 1] = "-u " .. k end
  end
  for _, k in ipairs(names) do
    if vars[k] then cmd[#cmd + 1] = _M.shell_quote(k .. "=" .. vars[k]) end
  end
  return table.concat(cmd, " ") .. " "
end

-- The binary with a vault (see vault_env; env: its overrides). Returns a
-- function(...) that runs `bin ...` with stdin from /dev/null and returns the
-- exit code, stdout and stderr (kept in dir).
function _M.vault_cli(bin, keyfile, data, dir, env)
  local prefix = _M.vault_env(keyfile, data, env) .. _M.shell_quote(bin)
  return function(...)
    local cmd = { prefix }
    for _, a in ipairs({ ... }) do cmd[#cmd + 1] = _M.shell_quote(a) end
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local code = tonumber(_M.sh(table.concat(cmd, " ") .. " > " .. _M.shell_quote(out) ..
      " 2> " .. _M.shell_quote(err) .. " < /dev/null; echo $?"):match("(%d+)%s*$"))
    return code, _M.read_file(out), _M.read_file(err)
  end
end

-- The source of a minimal connector of the given provider type whose
-- collect_evidence(ctx, config) runs `body` (Lua statements): for specs that
-- steer a job's behaviour (emit, fail, sleep) without any provider.
-- opts.requests_per_second: its declared rate limit (default 1000).
function _M.test_connector(provider, body, opts)
  local rps = (opts and opts.requests_per_second) or 1000
  return [[
local c = connector {
  provider_type = "]] .. provider .. [[", display_name = "Test", description = "a test connector",
  version = "0.1.0", auth_types = { "none" }, capabilities = { "evidence_collection" },
  rate_limits = { requests_per_second = ]] .. rps .. [[ }, egress = { "example.invalid" },
  documentation_url = "https://example.invalid/docs",
}
function c.test_connection() return { success = true } end
function c.collect_evidence(ctx, config)
]] .. body .. [[
end
return c
]]
end

-- GET http://127.0.0.1:<port><path> with an optional bearer token: the
-- status (a number) and the body.
function _M.http_get(port, path, token)
  local out = os.tmpname()
  local args = { "curl", "-s", "--max-time", "10", "-o", out, "-w", "%{http_code}" }
  if token then args[#args + 1] = "-H"; args[#args + 1] = "Authorization: Bearer " .. token end
  args[#args + 1] = "http://127.0.0.1:" .. port .. path
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = _M.shell_quote(a) end
  local status = tonumber(_M.sh(table.concat(quoted, " ")))
  local body = _M.read_file(out)
  os.remove(out)
  return status, body
end

-- The item of an integration in a /v1/health document.
function _M.health_item(doc, id)
  for _, it in ipairs(doc.integrations) do
    if it.integration_id == id then return it end
  end
end

-- http_get whose answer must not hold the canary text ("CANARY", which the
-- specs put in every secret they use).
function _M.clean_get(port, path, token)
  local status, body = _M.http_get(port, path, token)
  luassert.is_nil(body:find("CANARY", 1, true), "a secret in a response: " .. body)
  return status, body
end

-- A reader of a running API's /v1/health: health([token]) decodes it
-- (200 asserted), wait_status(id, want, seconds) waits (with `wait`, the
-- runtime helper's) until the integration has that status and returns its
-- item. port_of() gives the API's port when called.
function _M.health_reader(port_of, admin, wait)
  local function health(token)
    local s, b = _M.clean_get(port_of(), "/v1/health", token or admin)
    luassert.are.equal(200, s, b)
    return cjson.decode(b)
  end
  local function wait_status(id, want, seconds)
    return wait(function()
      local it = _M.health_item(health(), id)
      if it and it.status == want then return it end
    end, seconds)
  end
  return health, wait_status
end

return _M
