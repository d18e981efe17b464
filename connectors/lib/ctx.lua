-- ctx: the API a connector sees. Built inside each job's sandbox from the
-- core's primitives (`core`, C functions) and the pagination helper.
-- Everything here runs with the connector's own limits; nothing here can
-- reach a secret, because the core never hands one to Lua.
local core, paginate_factory = ...

local type, pairs, ipairs, select, tostring, tonumber, error = type, pairs, ipairs, select,
    tostring, tonumber, error
local string_format, string_byte, string_char, string_gsub, string_upper =
    string.format, string.byte, string.char, string.gsub, string.upper
local table_concat, table_sort = table.concat, table.sort

local ctx = {
  job_id = core.job_id,
  run_id = core.run_id,
  organization_id = core.organization_id,
  integration_id = core.integration_id,
  provider_type = core.provider_type,
  connector_version = core.connector_version,
  config = core.config,
  time = core.time,
  isotime = core.isotime,
  sleep = core.sleep,
  emit = core.emit,
}

-- HTTP --------------------------------------------------------------------

local http = { request = core.http_request }

local function verb(method)
  return function(url, opts)
    if type(url) ~= "string" then
      error("ctx.http." .. method:lower() .. ": the first argument must be the URL string", 2)
    end
    local req = { method = method, url = url }
    if opts ~= nil then
      if type(opts) ~= "table" then
        error("ctx.http." .. method:lower() .. ": options must be a table", 2)
      end
      for k, v in pairs(opts) do
        if k ~= "url" and k ~= "method" then req[k] = v end
      end
    end
    return core.http_request(req)
  end
end

http.get = verb("GET")
http.head = verb("HEAD")
http.post = verb("POST")
http.put = verb("PUT")
http.patch = verb("PATCH")
http.delete = verb("DELETE")

-- GET that decodes a JSON body and fails on anything but 2xx.
-- Returns value, response; or nil, err, response.
function http.get_json(url, opts)
  local res, err = http.get(url, opts)
  if not res then return nil, err end
  if not res.ok then
    return nil, string_format("GET %s: HTTP %d", (url:gsub("%?.*$", "")), res.status), res
  end
  local value, jerr = res:json()
  if value == nil then
    return nil, string_format("GET %s: response is not valid JSON (%s)",
      (url:gsub("%?.*$", "")), tostring(jerr)), res
  end
  return value, res
end

ctx.http = http

-- JSON ------------------------------------------------------------------------

local cjson = core.cjson
ctx.json = {
  encode = cjson.encode, -- returns nil, err on values JSON cannot hold
  decode = core.json_decode, -- returns nil, err on bad input or when too large
  null = cjson.null,
}

-- Logging ---------------------------------------------------------------------

local log = {}
for _, level in ipairs({ "debug", "info", "warn", "error" }) do
  log[level] = function(msg, fields)
    if type(msg) ~= "string" then msg = tostring(msg) end
    if fields ~= nil and type(fields) ~= "table" then
      error("ctx.log." .. level .. ": fields must be a table", 2)
    end
    core.log(level, msg, fields)
  end
end
ctx.log = log

-- Checkpoints -----------------------------------------------------------------

ctx.checkpoint = {
  get = core.checkpoint_get,
  set = core.checkpoint_set,
}

-- Crypto ----------------------------------------------------------------------

ctx.crypto = {
  sha256 = core.sha256,           -- (data [, raw]) hex digest, or raw bytes when raw is true
  hmac_sha256 = core.hmac_sha256, -- (key, data [, raw])
  base64_encode = core.base64_encode,
  base64_decode = core.base64_decode, -- nil, err on bad input
  hex_encode = core.hex_encode,
  hex_decode = core.hex_decode,       -- nil, err on bad input
}

-- URLs ------------------------------------------------------------------------

local url = {}

-- RFC 3986 percent-encoding of everything but unreserved characters.
function url.encode(s)
  s = tostring(s)
  return (string_gsub(s, "[^%w%-%._~]", function(c)
    return string_format("%%%02X", string_byte(c))
  end))
end

function url.decode(s)
  s = string_gsub(tostring(s), "+", " ")
  return (string_gsub(s, "%%(%x%x)", function(h) return string_char(tonumber(h, 16)) end))
end

-- Query string from a table, keys sorted so URLs are deterministic. A list
-- value repeats the key (a=1&a=2).
function url.build_query(params)
  if type(params) ~= "table" then error("ctx.url.build_query: expected a table", 2) end
  local keys = {}
  for k in pairs(params) do
    if type(k) ~= "string" then error("ctx.url.build_query: keys must be strings", 2) end
    keys[#keys + 1] = k
  end
  table_sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = params[k]
    if type(v) == "table" then
      for _, item in ipairs(v) do parts[#parts + 1] = url.encode(k) .. "=" .. url.encode(item) end
    else
      parts[#parts + 1] = url.encode(k) .. "=" .. url.encode(v)
    end
  end
  return table_concat(parts, "&")
end

-- Split a URL into scheme, host, port, path, query (a table) and fragment.
function url.parse(s)
  if type(s) ~= "string" then return nil, "ctx.url.parse: expected a string" end
  local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not an absolute URL: " .. s end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  local fragment
  path, fragment = path:match("^([^#]*)#?(.*)$")
  local p, q = path:match("^([^?]*)%??(.*)$")
  local host, port = authority:gsub("^.*@", ""), nil
  local h, pt = host:match("^%[(.*)%]:?(%d*)$")
  if not h then h, pt = host:match("^([^:]*):?(%d*)$") end
  port = tonumber(pt)
  local query = {}
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    query[url.decode(k)] = url.decode(v)
  end
  return {
    scheme = scheme:lower(), host = (h or ""):lower(),
    port = port or (scheme:lower() == "https" and 443 or 80),
    path = p ~= "" and p or "/", query = query, fragment = fragment ~= "" and fragment or nil,
  }
end

ctx.url = url

ctx.paginate = paginate_factory(ctx)

return ctx
