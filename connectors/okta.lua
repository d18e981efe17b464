-- Okta: the System Log as a stream of evidence. One item per log event
-- (sign-ins, MFA, sign-on policy evaluations, account lifecycle, app
-- assignments): the audit trail that access-control and monitoring controls
-- ask for, tailed as it grows.
--
-- config (the integration's):
--   base_url         the org's URL, e.g. https://acme.okta.com (required)
--   since            where a new stream starts, RFC 3339 (default: one hour
--                    before its first request); a stream with a cursor
--                    resumes from the cursor instead
--   limit            events per page, 1..1000 (default 1000)
--   poll_interval_s  wait after a page with fewer events than `limit`
--                    (default 60; Okta recommends polling every 60 to 300 s)
--   max_wait_s       longest wait for a spent rate limit (default 60)
--
-- How the log is tailed (Okta's System Log API, "Polling requests"): a
-- request with `since` and no `until`, in ascending order, selects events by
-- the time Okta persisted them, so an event that was delayed is never
-- skipped, and its answer ALWAYS has a `next` link, also when the page is
-- empty; polling that link again returns what was persisted since. Okta says
-- not to page with since/until but to follow the next links. So the cursor
-- is the next link itself: it is set after the events of its page were
-- emitted, which is what the runtime commits together with them, and a
-- restarted stream resumes exactly there.
--
-- Authentication: an API token (`SSWS <token>`, the integration's token_env
-- with auth_scheme SSWS) or an OAuth access token; the core adds it.

local type, tostring, tonumber, ipairs, error = type, tostring, tonumber, ipairs, error
local string_format = string.format
local math_max, math_min, math_floor = math.max, math.min, math.floor

local c = connector {
  provider_type = "okta",
  display_name = "Okta",
  description = "The Okta System Log (sign-ins, MFA, policy evaluations, lifecycle changes) "
      .. "streamed as evidence, one item per log event.",
  version = "0.1.0",
  auth_types = { "api_key", "oauth2", "private_key_jwt" },
  capabilities = { "streaming" },
  required_scopes = { "okta.logs.read" },
  -- Okta's default for /api/v1/logs is 120 requests per minute per org; the
  -- core also follows X-Rate-Limit-* and 429 answers.
  rate_limits = { requests_per_minute = 120 },
  egress = { "*.okta.com", "*.oktapreview.com", "*.okta-emea.com" },
  documentation_url = "https://developer.okta.com/docs/reference/api/system-log/",
}

local DEFAULT_LIMIT = 1000
local DEFAULT_POLL_S = 60
local DEFAULT_MAX_WAIT_S = 60
local MAX_RETRIES = 3
local HEADERS = { ["Accept"] = "application/json" }

local function read_config(ctx)
  local cfg = ctx.config or {}
  local base = cfg.base_url
  if type(base) ~= "string" or not base:match("^https?://[^/]+") then
    error("config.base_url must be the org's URL, e.g. https://acme.okta.com", 0)
  end
  local limit = cfg.limit == nil and DEFAULT_LIMIT or tonumber(cfg.limit)
  if not limit or limit < 1 or limit > 1000 or limit ~= math_floor(limit) then
    error("config.limit must be a whole number from 1 to 1000, got " .. tostring(cfg.limit), 0)
  end
  local poll = cfg.poll_interval_s == nil and DEFAULT_POLL_S or tonumber(cfg.poll_interval_s)
  if not poll or poll < 0 or poll > 3600 then
    error("config.poll_interval_s must be a number of seconds from 0 to 3600", 0)
  end
  local max_wait = cfg.max_wait_s == nil and DEFAULT_MAX_WAIT_S or tonumber(cfg.max_wait_s)
  if not max_wait or max_wait < 0 or max_wait > 3600 then
    error("config.max_wait_s must be a number of seconds from 0 to 3600", 0)
  end
  if cfg.since ~= nil and (type(cfg.since) ~= "string" or
      not cfg.since:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d")) then
    error("config.since must be an RFC 3339 time such as 2026-01-01T00:00:00Z", 0)
  end
  return { base = base:gsub("/+$", ""), limit = limit, poll = poll, max_wait = max_wait,
           since = cfg.since }
end

-- The Link header's targets by relation. Okta sends `<url>; rel="self"` and,
-- for a page that has one, `<url>; rel="next"`.
local function links(res)
  local out = {}
  local h = res.headers["link"]
  if type(h) ~= "string" then return out end
  for target, params in h:gmatch("<([^>]*)>([^<]*)") do
    local rel = params:match('rel%s*=%s*"?([%w%-]+)')
    if rel then out[rel] = target end
  end
  return out
end

local function okta_error(res)
  local body = res:json()
  if type(body) == "table" and type(body.errorSummary) == "string" then
    return string_format("%s (%s)", body.errorSummary, tostring(body.errorCode))
  end
  return "HTTP " .. tostring(res.status)
end

-- GET with Okta's rate limit: a 429 waits until X-Rate-Limit-Reset (at most
-- max_wait_s) and tries again, up to MAX_RETRIES times.
local function get(ctx, cfg, url)
  for attempt = 0, MAX_RETRIES do
    local res, err = ctx.http.get(url, { headers = HEADERS })
    if not res then
      error(string_format("GET %s: %s", (url:gsub("%?.*$", "")), tostring(err)), 0)
    end
    if res.status ~= 429 or attempt == MAX_RETRIES then return res end
    local reset = tonumber(res.headers["x-rate-limit-reset"])
    local wait = reset and reset - ctx.time() or cfg.max_wait
    ctx.log.warn("Okta rate limit reached; waiting", { wait_s = math_floor(wait + 0.5) })
    ctx.sleep(math_min(math_max(wait, 1), cfg.max_wait))
  end
end

function c.test_connection(ctx)
  local ok, cfg = pcall(read_config, ctx)
  if not ok then return { success = false, message = cfg } end
  local res = get(ctx, cfg, cfg.base .. "/api/v1/logs?limit=1")
  if res.status ~= 200 then
    return { success = false, message = "GET /api/v1/logs: " .. okta_error(res) }
  end
  return { success = true, message = "the System Log is readable" }
end

function c.stream(ctx, cursor)
  local cfg = read_config(ctx)
  local url
  if type(cursor) == "table" and type(cursor.next) == "string" then
    url = cursor.next
  else
    local since = cfg.since or ctx.isotime(ctx.time() - 3600)
    url = cfg.base .. "/api/v1/logs?" ..
        ctx.url.build_query{ since = since, limit = tostring(cfg.limit) }
  end
  while true do
    local res = get(ctx, cfg, url)
    if res.status ~= 200 then
      error("GET /api/v1/logs: " .. okta_error(res), 0)
    end
    local events, jerr = res:json()
    if type(events) ~= "table" then
      error("GET /api/v1/logs: the answer is not a JSON list (" .. tostring(jerr) .. ")", 0)
    end
    for _, ev in ipairs(events) do
      if type(ev) ~= "table" or type(ev.uuid) ~= "string" then
        error("GET /api/v1/logs: an event without a uuid", 0)
      end
      -- the event's uuid identifies it: the runtime's item id is stable for it
      ctx.emit{ resource_type = "okta.log_event", resource_id = ev.uuid, data = ev }
    end
    local nxt = links(res).next
    if not nxt then
      error("GET /api/v1/logs: a polling answer without a next link", 0)
    end
    -- after the page's events: the runtime commits them with this cursor
    ctx.checkpoint.set{ next = nxt }
    url = nxt
    if #events < cfg.limit then ctx.sleep(cfg.poll) end
  end
end

return c
