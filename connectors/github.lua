-- GitHub: organization settings, members with their 2FA status, and
-- repositories with the protection of their default branch, as compliance
-- evidence.
--
-- config (the integration's, also passed to collect_evidence):
--   organization    the organization's login (required)
--   base_url        API root (default https://api.github.com; GitHub
--                   Enterprise Server: https://HOST/api/v3)
--   per_page        page size of the listings, 1..100 (default 100)
--   resource_types  subset of github.organization, github.member,
--                   github.repository (default: all three)
--   max_wait_s      longest wait for a rate limit before retrying (default 60)
--
-- Requests per run: GET /orgs/{org}; the member listings filter=2fa_disabled,
-- role=admin and all; the repository listing; one GET per repository for its
-- default branch's protection. A rate-limited request (403/429 with
-- retry-after or x-ratelimit-remaining: 0) is retried up to 3 times.

local type, tostring, tonumber, pairs, ipairs, next, pcall, error =
    type, tostring, tonumber, pairs, ipairs, next, pcall, error
local string_format, string_sub = string.format, string.sub
local math_floor, math_max, math_min = math.floor, math.max, math.min
local table_concat, table_sort = table.concat, table.sort

local c = connector {
  provider_type = "github",
  display_name = "GitHub",
  description = "Organization security settings, members with two-factor authentication "
      .. "status and repositories with default-branch protection, from the GitHub REST API "
      .. "(github.com or GitHub Enterprise Server).",
  version = "1.0.0",
  auth_types = { "github_app", "oauth2", "api_key" },
  capabilities = { "evidence_collection" },
  required_scopes = { "read:org", "repo" },
  -- GitHub's documented limits for REST: 5,000 requests per hour per user or
  -- app installation (primary), and at most 900 points per minute on one
  -- endpoint family, a GET costing 1 point (secondary). The core enforces
  -- both and follows x-ratelimit-* and retry-after on top.
  rate_limits = { requests_per_minute = 900, requests_per_hour = 5000 },
  egress = { "api.github.com" },
  documentation_url = "https://docs.github.com/rest",
}

local DEFAULT_BASE_URL = "https://api.github.com"
local DEFAULT_PER_PAGE = 100
local DEFAULT_MAX_WAIT_S = 60
local MAX_RETRIES = 3
-- GitHub: a secondary limit without retry-after means "wait at least a minute".
local UNSPECIFIED_WAIT_S = 60
local MAX_PROTECTION_WARNINGS = 20
local PROGRESS_EVERY = 500 -- repositories between two progress log lines

local HEADERS = {
  ["Accept"] = "application/vnd.github+json",
  ["X-GitHub-Api-Version"] = "2022-11-28",
}

local RESOURCE_TYPES = { "github.organization", "github.member", "github.repository" }

-- Organization fields kept as evidence: named ones, and every field that
-- starts with one of the prefixes (GitHub adds such settings over time).
local ORG_FIELDS = {
  "login", "id", "name", "html_url", "created_at", "is_verified",
  "two_factor_requirement_enabled", "default_repository_permission",
  "members_allowed_repository_creation_type", "web_commit_signoff_required",
  "deploy_keys_enabled_for_repositories", "has_organization_projects",
  "has_repository_projects",
}
local ORG_FIELD_PREFIXES = {
  "members_can_", "dependabot_", "secret_scanning_", "advanced_security_",
  "dependency_graph_",
}

-- 404 messages of the protection endpoint that mean "not protected".
local UNPROTECTED_MESSAGES = { ["Branch not protected"] = true, ["Branch not found"] = true }

-- Scopes that include others (classic tokens report only what was granted).
local IMPLIED_SCOPES = {
  ["admin:org"] = { "write:org", "read:org" },
  ["write:org"] = { "read:org" },
}

local HINTS = {
  [401] = "GitHub rejected the integration's credential; check that the token is valid "
      .. "and has not expired or been revoked",
  [403] = "the credential may not read this: a token needs the scopes read:org and repo, "
      .. "a GitHub App the Members and Administration read permissions",
  [404] = "not found: check config.organization and that the credential can see the "
      .. "organization",
}

-- ctx.json.null; ctx reaches the connector only through its entry points,
-- which set it before anything else (each job loads this file afresh).
local null

-- Helpers ---------------------------------------------------------------------

local function type_name(v)
  if v == null then return "null" end
  return type(v)
end

local function is_list(t)
  if type(t) ~= "table" then return false end
  return next(t) == nil or t[1] ~= nil
end

-- GitHub ids are JSON numbers; resource ids are strings without exponent.
local function id_string(v)
  if type(v) == "number" and v == math_floor(v) then return string_format("%.0f", v) end
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

-- "/orgs/acme/members" from any URL of the API, query string dropped.
local function endpoint(cfg, url)
  local path
  if string_sub(url, 1, #cfg.base_url) == cfg.base_url then
    path = string_sub(url, #cfg.base_url + 1)
  else
    path = url:gsub("^%a[%w+.-]*://[^/]*", "")
  end
  path = path:gsub("[?#].*$", "")
  return path ~= "" and path or "/"
end

-- GitHub's own explanation of an error ({"message": ...}), shortened.
local function github_message(res)
  if #res.body == 0 or #res.body > 65536 then return nil end
  local body = res:json()
  if type(body) ~= "table" or type(body.message) ~= "string" then return nil end
  local msg = body.message
  if #msg > 200 then msg = string_sub(msg, 1, 200) .. "..." end
  return msg
end

-- The HTTP client's message starts with "GET <url>: "; name the endpoint once.
local function transport_error(cfg, url, err)
  return string_format("GET %s: %s", endpoint(cfg, url),
      (tostring(err):gsub("^GET %S+: ", "")))
end

local function http_error(cfg, url, res)
  local msg = string_format("GET %s: HTTP %d", endpoint(cfg, url), res.status)
  local detail = github_message(res)
  if detail then msg = msg .. " (" .. detail .. ")" end
  local hint = HINTS[res.status]
  if hint then msg = msg .. ": " .. hint end
  return msg
end

-- Configuration ---------------------------------------------------------------

-- Validated settings, or nil, err naming the field. organization may be
-- left out when org_optional (test_connection then checks the user).
local function read_config(ctx, raw, org_optional)
  if raw == nil or raw == null then raw = {} end
  if type(raw) ~= "table" then
    return nil, "the config must be a JSON object, got " .. type_name(raw)
  end

  local org = raw.organization
  if org == nil or org == null or org == "" then
    if not org_optional then
      return nil, "config.organization is required: the login of the GitHub organization "
          .. "to collect from, e.g. \"acme\""
    end
    org = nil
  elseif type(org) ~= "string" then
    return nil, string_format("config.organization must be a string (the organization's "
        .. "login, e.g. \"acme\"), got %s", type_name(org))
  elseif #org > 100 or not org:match("^[%w][%w_.%-]*$") then
    return nil, string_format("config.organization '%s' is not a GitHub organization login "
        .. "(letters, digits and hyphens, e.g. \"acme\")", string_sub(org, 1, 100))
  end

  local base_url = raw.base_url
  if base_url == nil or base_url == null then base_url = DEFAULT_BASE_URL end
  local u = type(base_url) == "string" and ctx.url.parse(base_url)
  if not u or (u.scheme ~= "https" and u.scheme ~= "http") or u.host == ""
      or base_url:find("[?#]") then
    return nil, string_format("config.base_url must be an http(s) URL such as %s or "
        .. "https://github.example.com/api/v3, got %s", DEFAULT_BASE_URL,
        type(base_url) == "string" and "'" .. base_url .. "'" or type_name(base_url))
  end
  base_url = base_url:gsub("/+$", "")

  local per_page = raw.per_page
  if per_page == nil or per_page == null then per_page = DEFAULT_PER_PAGE end
  if type(per_page) ~= "number" or per_page ~= math_floor(per_page)
      or per_page < 1 or per_page > 100 then
    return nil, string_format("config.per_page must be a whole number from 1 to 100, got %s",
        tostring(type(per_page) == "number" and per_page or type_name(per_page)))
  end

  local max_wait_s = raw.max_wait_s
  if max_wait_s == nil or max_wait_s == null then max_wait_s = DEFAULT_MAX_WAIT_S end
  if type(max_wait_s) ~= "number" or max_wait_s < 0 or max_wait_s > 3600 then
    return nil, string_format("config.max_wait_s must be a number of seconds from 0 to 3600, "
        .. "got %s", tostring(type(max_wait_s) == "number" and max_wait_s
        or type_name(max_wait_s)))
  end

  local wanted = {}
  local types = raw.resource_types
  if types == nil or types == null then
    for _, t in ipairs(RESOURCE_TYPES) do wanted[t] = true end
  else
    local known = {}
    for _, t in ipairs(RESOURCE_TYPES) do known[t] = true end
    if not is_list(types) or #types == 0 then
      return nil, "config.resource_types must be a non-empty list drawn from "
          .. table_concat(RESOURCE_TYPES, ", ")
    end
    for i, t in ipairs(types) do
      if not known[t] then
        return nil, string_format("config.resource_types[%d]: unknown resource type %s "
            .. "(expected %s)", i, type(t) == "string" and "'" .. t .. "'" or type_name(t),
            table_concat(RESOURCE_TYPES, ", "))
      end
      wanted[t] = true
    end
  end

  return {
    organization = org,
    org_path = org and "/orgs/" .. ctx.url.encode(org),
    base_url = base_url,
    per_page = per_page,
    max_wait_s = max_wait_s,
    wanted = wanted,
  }
end

-- HTTP ------------------------------------------------------------------------

-- Seconds to wait before retrying a rate-limited response; nil when the
-- response is not a rate limit (a 403 may also mean "not allowed").
local function rate_limit_wait(ctx, res)
  if res.status ~= 403 and res.status ~= 429 then return nil end
  local h = res.headers
  local retry_after = tonumber(h["retry-after"])
  if retry_after then return math_max(retry_after, 0) end
  if h["x-ratelimit-remaining"] == "0" then
    local reset = tonumber(h["x-ratelimit-reset"]) -- epoch seconds
    if reset then return math_max(reset - ctx.time() + 1, 1) end
    return UNSPECIFIED_WAIT_S
  end
  if res.status == 429 then return UNSPECIFIED_WAIT_S end
  return nil
end

-- GET that waits out rate limits. Returns the response (any status), or
-- nil, err, reason where reason is "rate_limited" or "transport".
local function get(ctx, cfg, url, opts)
  local res, err, wait
  for attempt = 1, MAX_RETRIES + 1 do
    res, err = ctx.http.get(url, opts)
    if not res then return nil, transport_error(cfg, url, err), "transport" end
    wait = rate_limit_wait(ctx, res)
    if not wait then return res end
    if attempt > MAX_RETRIES then break end
    wait = math_min(wait, cfg.max_wait_s)
    ctx.log.warn("GitHub rate limit: waiting before retrying", {
      endpoint = endpoint(cfg, url), status = res.status, wait_s = wait, attempt = attempt,
    })
    ctx.sleep(wait)
  end
  local detail = github_message(res)
  return nil, string_format("GET %s: still rate limited by GitHub after %d retries "
      .. "(HTTP %d%s); the credential's request budget is spent: run the collection less "
      .. "often or raise config.max_wait_s", endpoint(cfg, url), MAX_RETRIES, res.status,
      detail and ", " .. detail or ""), "rate_limited"
end

local function list_items(body, res)
  if not is_list(body) then
    error(string_format("GET %s: expected a JSON array (a list)", res.url), 0)
  end
  return body
end

-- Pages through a listing (Link: rel="next") and calls on_item(item) for each
-- element. Returns true, or nil, err, status (the failing page's HTTP status).
local function each_item(ctx, cfg, path, query, on_item)
  local failure, failure_status
  local function request(url, opts)
    local res, err = get(ctx, cfg, url, opts)
    if res and not res.ok then
      failure_status = res.status
      res, err = nil, http_error(cfg, url, res)
    end
    if not res then failure = err end
    return res, err
  end
  local ok, err = pcall(function()
    for items in ctx.paginate{ url = cfg.base_url .. path, style = "link", query = query,
                               headers = HEADERS, request = request, items = list_items } do
      for i = 1, #items do on_item(items[i]) end
    end
  end)
  if ok then return true end
  if not failure and type(err) == "string" then
    -- raised by ctx.paginate (e.g. a body that is not JSON): drop the Lua
    -- position and name the endpoint as the other errors do
    err = err:gsub("^[^%s:]+%.lua:%d+: ", "")
    err = err:gsub("^GET (%a[%w+.-]*://%S+):", function(url)
      return "GET " .. endpoint(cfg, url) .. ":"
    end)
  end
  return nil, failure or err, failure_status
end

local function get_json(ctx, cfg, path)
  local url = cfg.base_url .. path
  local res, err = get(ctx, cfg, url, { headers = HEADERS })
  if not res then return nil, err end
  if not res.ok then return nil, http_error(cfg, url, res), res end
  local body, jerr = res:json()
  if type(body) ~= "table" then
    return nil, string_format("GET %s: response is not a JSON object (%s)", endpoint(cfg, url),
        tostring(jerr or "got " .. type_name(body))), res
  end
  return body, res
end

-- Organization ------------------------------------------------------------------

local function org_settings(org)
  local data = {}
  for _, k in ipairs(ORG_FIELDS) do
    if org[k] ~= nil then data[k] = org[k] end
  end
  for k, v in pairs(org) do
    if type(v) ~= "table" then
      for _, prefix in ipairs(ORG_FIELD_PREFIXES) do
        if string_sub(k, 1, #prefix) == prefix then
          data[k] = v
          break
        end
      end
    end
  end
  if type(org.plan) == "table" then
    data.plan = { name = org.plan.name, seats = org.plan.seats,
                  filled_seats = org.plan.filled_seats }
  end
  return data
end

local function collect_organization(ctx, cfg)
  local org, err = get_json(ctx, cfg, cfg.org_path)
  if not org then return nil, err end
  local data = org_settings(org)
  ctx.emit{
    resource_type = "github.organization",
    resource_id = type(org.login) == "string" and org.login or cfg.organization,
    data = data,
  }
  if data.two_factor_requirement_enabled == nil then
    ctx.log.warn("organization settings are partly hidden: GitHub shows them to organization "
        .. "owners only", { organization = cfg.organization })
  end
  ctx.log.info("organization settings collected", { organization = cfg.organization })
  return true
end

-- Members ---------------------------------------------------------------------

-- Logins of members without 2FA, or false when GitHub will not say (it tells
-- organization owners only: 403/422 for anyone else); nil, err on failure.
local function members_without_2fa(ctx, cfg)
  local logins = {}
  local ok, err, status = each_item(ctx, cfg, cfg.org_path .. "/members",
      { filter = "2fa_disabled", per_page = cfg.per_page },
      function(m) if type(m) == "table" and m.login then logins[m.login] = true end end)
  if ok then return logins end
  if status == 403 or status == 422 then
    ctx.log.warn("GitHub did not list members without 2FA (only organization owners may): "
        .. "two_factor_enabled is recorded as unknown", {
          organization = cfg.organization, status = status,
        })
    return false
  end
  return nil, err
end

local function collect_members(ctx, cfg)
  local no_2fa, err = members_without_2fa(ctx, cfg)
  if no_2fa == nil then return nil, err end

  local admins, ok = {}
  ok, err = each_item(ctx, cfg, cfg.org_path .. "/members",
      { role = "admin", per_page = cfg.per_page },
      function(m) if type(m) == "table" and m.login then admins[m.login] = true end end)
  if not ok then return nil, err end

  local seen, count, without_2fa, skipped = {}, 0, 0, 0
  ok, err = each_item(ctx, cfg, cfg.org_path .. "/members", { per_page = cfg.per_page },
      function(m)
        local id = type(m) == "table" and id_string(m.id)
        if not id or type(m.login) ~= "string" then
          skipped = skipped + 1
          return
        end
        if seen[id] then return end -- listed twice while the membership changed
        seen[id] = true
        local has_2fa, status = null, "unknown"
        if no_2fa then
          has_2fa = not no_2fa[m.login]
          status = has_2fa and "enabled" or "disabled"
          if not has_2fa then without_2fa = without_2fa + 1 end
        end
        ctx.emit{
          resource_type = "github.member",
          resource_id = id,
          data = {
            login = m.login,
            id = m.id,
            type = m.type,
            site_admin = m.site_admin,
            role = admins[m.login] and "admin" or "member",
            two_factor_enabled = has_2fa,
            two_factor_status = status,
          },
        }
        count = count + 1
      end)
  if not ok then return nil, err end

  if skipped > 0 then
    ctx.log.warn("skipped member entries without a login or id", { count = skipped })
  end
  local n_admins = 0
  for _ in pairs(admins) do n_admins = n_admins + 1 end
  ctx.log.info("members collected", {
    organization = cfg.organization, members = count, admins = n_admins,
    without_2fa = no_2fa and without_2fa or "unknown",
  })
  return count
end

-- Repositories ----------------------------------------------------------------

local function enabled(v)
  return type(v) == "table" and v.enabled == true
end

local function protection_summary(p)
  local reviews, checks = p.required_pull_request_reviews, p.required_status_checks
  local summary = {
    enforce_admins = enabled(p.enforce_admins),
    required_linear_history = enabled(p.required_linear_history),
    allow_force_pushes = enabled(p.allow_force_pushes),
    allow_deletions = enabled(p.allow_deletions),
    required_signatures = enabled(p.required_signatures),
    required_conversation_resolution = enabled(p.required_conversation_resolution),
    lock_branch = enabled(p.lock_branch),
    push_restrictions = type(p.restrictions) == "table",
    required_pull_request_reviews = false,
    required_status_checks = false,
  }
  if type(reviews) == "table" then
    summary.required_pull_request_reviews = {
      required_approving_review_count = tonumber(reviews.required_approving_review_count) or 0,
      dismiss_stale_reviews = reviews.dismiss_stale_reviews == true,
      require_code_owner_reviews = reviews.require_code_owner_reviews == true,
      require_last_push_approval = reviews.require_last_push_approval == true,
    }
  end
  if type(checks) == "table" then
    local contexts = {}
    if is_list(checks.contexts) then
      for _, ctx_name in ipairs(checks.contexts) do
        if type(ctx_name) == "string" then contexts[#contexts + 1] = ctx_name end
      end
    end
    table_sort(contexts)
    summary.required_status_checks = {
      strict = checks.strict == true,
      -- an empty list would encode as {}: leave the field out instead
      contexts = #contexts > 0 and contexts or nil,
    }
  end
  return summary
end

-- The default branch's protection: summary table, or false when the branch
-- is unprotected; nil, status, message when GitHub would not tell (status 0
-- for a transport error); raises nothing. A spent rate limit is an error
-- for the whole run: nil, nil, err, "rate_limited".
local function default_branch_protection(ctx, cfg, repo)
  local branch = repo.default_branch
  if type(branch) ~= "string" or branch == "" then return false end -- empty repository
  local owner = type(repo.owner) == "table" and repo.owner.login or cfg.organization
  local url = string_format("%s/repos/%s/%s/branches/%s/protection", cfg.base_url,
      ctx.url.encode(owner), ctx.url.encode(repo.name), ctx.url.encode(branch))
  local res, err, reason = get(ctx, cfg, url, { headers = HEADERS })
  if not res then
    if reason == "rate_limited" then return nil, nil, err, reason end
    return nil, 0, err
  end
  if res.status == 404 then
    -- Only GitHub's own "Branch not protected" (or "Branch not found":
    -- nothing to protect) is evidence of no protection. A bare "Not Found"
    -- is how GitHub hides the setting from a credential without admin access.
    local message = github_message(res)
    if UNPROTECTED_MESSAGES[message] then return false end
    return nil, 404, string_format("GET %s: HTTP 404 (%s): the credential may lack admin "
        .. "access to the repository", endpoint(cfg, url), message or "no message")
  end
  if not res.ok then return nil, res.status, http_error(cfg, url, res) end
  local body, jerr = res:json()
  if type(body) ~= "table" then
    return nil, res.status, string_format("GET %s: response is not a JSON object (%s)",
        endpoint(cfg, url), tostring(jerr or "got " .. type_name(body)))
  end
  return protection_summary(body)
end

local function security_summary(sa)
  if type(sa) ~= "table" then return nil end
  local out, any = {}, false
  for k, v in pairs(sa) do
    if type(v) == "table" and type(v.status) == "string" then
      out[k] = v.status
      any = true
    end
  end
  return any and out or nil
end

local function collect_repositories(ctx, cfg)
  local seen, count, unknown = {}, 0, 0
  local ok, err = each_item(ctx, cfg, cfg.org_path .. "/repos",
      { type = "all", per_page = cfg.per_page },
      function(repo)
        local id = type(repo) == "table" and id_string(repo.id)
        if not id or type(repo.name) ~= "string" or seen[id] then return end
        seen[id] = true
        local protection, status, perr, reason = default_branch_protection(ctx, cfg, repo)
        if reason == "rate_limited" then error(perr, 0) end -- stops the listing
        local data = {
          name = repo.name,
          full_name = repo.full_name,
          private = repo.private == true,
          visibility = repo.visibility or (repo.private and "private" or "public"),
          archived = repo.archived == true,
          fork = repo.fork == true,
          disabled = repo.disabled == true,
          default_branch = repo.default_branch,
          security_and_analysis = security_summary(repo.security_and_analysis),
        }
        if protection == nil then
          unknown = unknown + 1
          data.default_branch_protection = null
          data.protection_status = "unknown"
          data.protection_http_status = status
          data.protection_error = perr
          if unknown <= MAX_PROTECTION_WARNINGS then
            ctx.log.warn("default-branch protection unknown; the repository is recorded "
                .. "without it", { repository = repo.full_name, status = status, error = perr })
          end
        else
          data.default_branch_protection = protection
          data.protection_status = protection and "protected" or "unprotected"
        end
        ctx.emit{ resource_type = "github.repository", resource_id = id, data = data }
        count = count + 1
        if count % PROGRESS_EVERY == 0 then
          ctx.log.info("repositories progress", { organization = cfg.organization,
                                                   repositories = count })
        end
      end)
  if not ok then return nil, err end
  if unknown > MAX_PROTECTION_WARNINGS then
    ctx.log.warn("default-branch protection unknown for more repositories than logged",
        { repositories = unknown })
  end
  ctx.log.info("repositories collected", {
    organization = cfg.organization, repositories = count, protection_unknown = unknown,
  })
  return count, unknown
end

-- Entry points ------------------------------------------------------------------

function c.collect_evidence(ctx, config)
  null = ctx.json.null
  local cfg, err = read_config(ctx, config or ctx.config)
  if not cfg then error(err, 0) end

  local summary = { organization = cfg.organization, members = 0, repositories = 0 }
  if cfg.wanted["github.organization"] then
    local ok
    ok, err = collect_organization(ctx, cfg)
    if not ok then error(err, 0) end
  end
  if cfg.wanted["github.member"] then
    summary.members, err = collect_members(ctx, cfg)
    if not summary.members then error(err, 0) end
  end
  if cfg.wanted["github.repository"] then
    summary.repositories, summary.protection_unknown = collect_repositories(ctx, cfg)
    if not summary.repositories then error(summary.protection_unknown, 0) end
  end

  -- Member and repository listings are not incremental: the checkpoint only
  -- records the last complete run.
  ctx.checkpoint.set{
    last_run_at = ctx.isotime(),
    members = summary.members,
    repositories = summary.repositories,
  }
  ctx.log.info("collection finished", summary)
  return summary
end

local function granted_scopes(header)
  local scopes, has = {}, {}
  for s in header:gmatch("[^,%s]+") do
    scopes[#scopes + 1] = s
    has[s] = true
    for _, implied in ipairs(IMPLIED_SCOPES[s] or {}) do has[implied] = true end
  end
  return scopes, has
end

function c.test_connection(ctx)
  null = ctx.json.null
  local cfg, err = read_config(ctx, ctx.config, true)
  if not cfg then return { success = false, message = err, details = {} } end

  local with_org = cfg.organization ~= nil
  local path = with_org and cfg.org_path or "/user"
  local url = cfg.base_url .. path
  local res
  res, err = ctx.http.get(url, { headers = HEADERS })
  if not res then
    return { success = false, message = "could not reach GitHub: " ..
        transport_error(cfg, url, err), details = { base_url = cfg.base_url } }
  end

  local h = res.headers
  local details = {
    base_url = cfg.base_url,
    rate_limit_remaining = tonumber(h["x-ratelimit-remaining"]),
  }
  if res.status == 401 then
    return { success = false, details = details, message = "Bad credentials: GitHub answered "
        .. "HTTP 401 for GET " .. path .. "; check that the integration's token is valid and "
        .. "has not expired or been revoked" }
  end
  if rate_limit_wait(ctx, res) then
    local reset = tonumber(h["x-ratelimit-reset"])
    return { success = false, details = details, message = string_format("GitHub rate limit "
        .. "exceeded for this credential (HTTP %d)%s", res.status,
        reset and "; it resets at " .. ctx.isotime(reset) or "; retry in a minute") }
  end
  if not res.ok then
    return { success = false, details = details, message = http_error(cfg, url, res) }
  end
  local body = res:json()
  if type(body) ~= "table" then
    return { success = false, details = details,
             message = "GET " .. path .. ": the response is not a JSON object; is base_url "
                 .. "the API root (https://HOST/api/v3 for GitHub Enterprise Server)?" }
  end

  local header = h["x-oauth-scopes"]
  if header and header:find("%S") then
    local scopes, has = granted_scopes(header)
    details.scopes = scopes
    local missing = {}
    for _, s in ipairs(c.required_scopes) do
      if not has[s] then missing[#missing + 1] = s end
    end
    if #missing > 0 then
      details.missing_scopes = missing
      return { success = false, details = details, message = "the token lacks the scope(s) "
          .. table_concat(missing, ", ") .. "; grant " .. table_concat(c.required_scopes, " and ")
          .. " to collect members and branch protection" }
    end
  end

  if with_org then
    details.organization = body.login
    return { success = true, details = details,
             message = "connected to GitHub organization '" .. tostring(body.login) .. "'" }
  end
  details.login = body.login
  return { success = true, details = details,
           message = "connected to GitHub as '" .. tostring(body.login) .. "'" }
end

return c
