-- Pagination: one iterator for the four styles providers use.
--
--   for items, res in ctx.paginate{ url = ..., style = "link" } do ... end
--
-- Each step performs one GET and returns the page's items (a list) and the
-- response. A non-2xx response or a body that is not JSON raises an error
-- naming the URL (without its query string) and the status. Styles:
--
--   link        follow `Link: <...>; rel="next"` (GitHub, Okta, ServiceNow)
--   cursor      pass `cursor_param` = next_cursor(body) until it is empty (Slack)
--   offset      advance `offset_param` by the page size until a short page or
--               `total(body)` is reached (Jira startAt/maxResults)
--   next_token  pass `token_param` = next_token(body), or follow next_url(body)
--               (Google nextPageToken, Graph @odata.nextLink, Salesforce)
--
-- Common options: query (table), headers, items(body, res) -> list (default:
-- the body itself when it is a list), max_pages (default 10000), page_size
-- and limit_param for offset style.
--
-- request(url, { query = ..., headers = ... }) -> res | nil, err: performs
-- each page's GET instead of ctx.http.get, e.g. a connector's wrapper that
-- waits out rate limits and retries. Its nil, err is raised like a transport
-- error; a response it returns is checked like any other.
return function(ctx)
  local type, error, tostring = type, error, tostring
  local string_format = string.format

  local function copy(t)
    local out = {}
    if t then for k, v in pairs(t) do out[k] = v end end
    return out
  end

  local function strip_query(u)
    return (u:gsub("%?.*$", ""))
  end

  local function next_link(res)
    local link = res.headers["link"]
    if not link then return nil end
    for part in link:gmatch("[^,]+") do
      local target, params = part:match("^%s*<([^>]*)>(.*)$")
      if target and params:match('rel%s*=%s*"?[^"]*%f[%w]next%f[^%w]') then return target end
    end
    return nil
  end

  local function default_items(body)
    if type(body) == "table" then return body end
    return {}
  end

  local styles = { link = true, cursor = true, offset = true, next_token = true }

  return function(opts)
    if type(opts) ~= "table" then error("ctx.paginate: expected an options table", 2) end
    if type(opts.url) ~= "string" then error("ctx.paginate: 'url' must be a string", 2) end
    local style = opts.style or "link"
    if not styles[style] then
      error("ctx.paginate: unknown style '" .. tostring(style) ..
        "' (expected link, cursor, offset or next_token)", 2)
    end
    if style == "cursor" and type(opts.next_cursor) ~= "function" then
      error("ctx.paginate: style 'cursor' needs next_cursor(body, res)", 2)
    end
    if style == "next_token" and type(opts.next_token) ~= "function"
        and type(opts.next_url) ~= "function" then
      error("ctx.paginate: style 'next_token' needs next_token(body, res) or next_url(body, res)", 2)
    end
    if opts.request ~= nil and type(opts.request) ~= "function" then
      error("ctx.paginate: 'request' must be a function(url, opts) -> res | nil, err", 2)
    end
    local request = opts.request or ctx.http.get
    local items_of = opts.items or default_items
    local max_pages = opts.max_pages or 10000
    local query = copy(opts.query)
    local url = opts.url
    local pages, done = 0, false
    local offset = opts.start or 0
    local page_size = opts.page_size

    if style == "offset" then
      query[opts.offset_param or "offset"] = offset
      if page_size then query[opts.limit_param or "limit"] = page_size end
    end

    return function()
      if done then return nil end
      if pages >= max_pages then
        error(string_format("ctx.paginate: stopped after max_pages = %d pages", max_pages), 2)
      end
      local res, err = request(url, { query = query, headers = opts.headers })
      if not res then error(err, 2) end
      pages = pages + 1
      if not res.ok then
        error(string_format("GET %s: HTTP %d%s", strip_query(res.url ~= "" and res.url or url),
          res.status, res.status == 429 and " (rate limited)" or ""), 2)
      end
      local body, jerr = res:json()
      if body == nil then
        error(string_format("GET %s: response is not valid JSON (%s)", strip_query(url),
          tostring(jerr)), 2)
      end
      local items = items_of(body, res)
      if type(items) ~= "table" then items = {} end

      if style == "link" then
        local nxt = next_link(res)
        if nxt then url, query = nxt, nil else done = true end
      elseif style == "cursor" then
        local cur = opts.next_cursor(body, res)
        if cur == nil or cur == "" or cur == ctx.json.null then
          done = true
        else
          query[opts.cursor_param or "cursor"] = cur
        end
      elseif style == "offset" then
        local n = #items
        offset = offset + n
        local total = opts.total and opts.total(body, res)
        if n == 0 or (page_size and n < page_size) or (total and offset >= total) then
          done = true
        else
          query[opts.offset_param or "offset"] = offset
        end
      else -- next_token
        if opts.next_url then
          local nxt = opts.next_url(body, res)
          if nxt == nil or nxt == "" or nxt == ctx.json.null then done = true
          else url, query = nxt, nil end
        else
          local tok = opts.next_token(body, res)
          if tok == nil or tok == "" or tok == ctx.json.null then done = true
          else query[opts.token_param or "pageToken"] = tok end
        end
      end
      return items, res
    end
  end
end
