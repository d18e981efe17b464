-- The ctx API, exercised through real jobs (real sandbox, real HTTP client)
-- against a local HTTP peer that pages in every style and echoes requests.
local T = require "junction.testing"
local peer_mod = require "helpers.peer"

local peer

local function run(source, opts)
  opts = opts or {}
  opts.source = source
  opts.allow_hosts = opts.allow_hosts or { "127.0.0.1" }
  opts.config = opts.config or { base = peer:url() }
  return T.run(opts)
end

local function ok(source, opts)
  local r, logs, raw = run(source, opts)
  assert.are.equal("succeeded", r.status, r.error)
  return r.result, r, logs, raw
end

describe("ctx", function()
  setup(function() peer = peer_mod.start("spec/helpers/paging_peer.js") end)
  teardown(function() peer:stop() end)

  describe("ctx.http", function()
    it("returns status, lower-case headers, body and json()", function()
      local res = ok([[
        local ctx = ...
        local res = assert(ctx.http.get(ctx.config.base .. "/echo?x=1", { headers = { ["X-Test"] = "yes" } }))
        local body = assert(res:json())
        return { status = res.status, ok = res.ok, ct = res.headers["content-type"],
                 method = body.method, header = body.headers["x-test"], q = body.query.x }
      ]])
      assert.are.same({ status = 200, ok = true, ct = "application/json", method = "GET",
        header = "yes", q = "1" }, res)
    end)

    it("sends query tables sorted and encoded, and JSON bodies", function()
      local res = ok([[
        local ctx = ...
        local res = assert(ctx.http.post(ctx.config.base .. "/echo",
          { query = { b = "two words", a = 1 }, json = { z = 1, a = { true } } }))
        local body = res:json()
        return { url = res.url, body = body.body, ct = body.headers["content-type"], m = body.method }
      ]])
      assert.matches("/echo%?a=1&b=two%%20words$", res.url)
      assert.are.equal('{"a":[true],"z":1}', res.body)
      assert.are.equal("application/json", res.ct)
      assert.are.equal("POST", res.m)
    end)

    it("injects the credential in C; the script never sees it", function()
      local canary = "ghp_CANARYabcdefghijklmnopqrstuvwxyz0123"
      local res, r, logs, raw = ok([[
        local ctx = ...
        local res = assert(ctx.http.get(ctx.config.base .. "/echo"))
        local seen = res:json().headers.authorization
        -- Walk everything reachable from the script and look for the token.
        local found, visited = false, {}
        local function walk(v)
          if type(v) == "string" then
            if v:find("CANARY", 1, true) then found = true end
          elseif type(v) == "table" and not visited[v] then
            visited[v] = true
            for k, x in pairs(v) do walk(k) walk(x) end
          end
        end
        walk(ctx) walk(_G)
        ctx.log.info("auth was " .. tostring(seen))
        return { sent = seen ~= nil, reachable = found }
      ]], { token = canary })
      -- the peer received it, nothing in the state held it, the log line is redacted
      assert.is_true(res.sent)
      assert.is_false(res.reachable)
      assert.is_nil(raw:find("CANARY", 1, true))
    end)

    it("drops the credential on a redirect to another origin", function()
      local res = ok([[
        local ctx = ...
        local other = ctx.config.base:gsub("127.0.0.1", "localhost")
        local res = assert(ctx.http.get(ctx.config.base .. "/redirect",
          { query = { to = other .. "/echo" } }))
        return { status = res.status, auth = res:json().headers.authorization or "none" }
      ]], { token = "s3cr3t-token-value", allow_hosts = { "127.0.0.1", "localhost" } })
      assert.are.same({ status = 200, auth = "none" }, res)
    end)

    it("refuses hosts outside the egress list", function()
      local res = ok([[
        local ctx = ...
        local res, err = ctx.http.get("https://evil.example.com/steal")
        return { res = res == nil, err = err }
      ]])
      assert.is_true(res.res)
      assert.matches("egress denied: host 'evil.example.com'", res.err, 1, true)
    end)

    it("refuses a declared host that resolves to a loopback address (SSRF)", function()
      local res = ok([[
        local ctx = ...
        local res, err = ctx.http.get("http://localhost:1/latest/meta-data")
        return { res = res == nil, err = err }
      ]], { allow_hosts = {}, egress = { "localhost" } })
      assert.is_true(res.res)
      assert.matches("refused", res.err:lower(), 1, true)
    end)

    it("refuses metadata-service addresses even when named by IP", function()
      local res = ok([[
        local ctx = ...
        local _, err = ctx.http.get("http://169.254.169.254/latest/meta-data")
        return err
      ]], { allow_hosts = {}, egress = { "169.254.169.254" } })
      assert.matches("refused", res:lower(), 1, true)
    end)

    it("raises on misuse with a precise message", function()
      for code, msg in pairs({
        ["ctx.http.request{ url = 'http://x', hedaers = {} }"] = "unknown option 'hedaers'",
        ["ctx.http.get(ctx.config.base, { headers = { ['Host'] = 'x' } })"] = "set by the transport",
        ["ctx.http.get(ctx.config.base, { headers = { ['X-A'] = 'a\\r\\nB: c' } })"] = "line break",
        ["ctx.http.get(ctx.config.base, { headers = { Authorization = 'x' } })"] = "added by the core",
        ["ctx.http.request{ url = ctx.config.base, method = 'TRACE' }"] = "unsupported method",
        ["ctx.http.get(42)"] = "first argument must be the URL",
      }) do
        local r = run("local ctx = ... " .. code)
        assert.are.equal("failed", r.status, code)
        assert.matches(msg, r.error, 1, true)
      end
    end)

    it("returns nil, err for transport failures and bad JSON, never a crash", function()
      local res = ok([[
        local ctx = ...
        local out = {}
        local _, e1 = ctx.http.get("http://127.0.0.1:1/closed")
        out.refused = e1
        local res = assert(ctx.http.get(ctx.config.base .. "/badjson"))
        local v, e2 = res:json()
        out.badjson = v == nil and e2
        local _, e3 = ctx.http.get(ctx.config.base .. "/slow?ms=3000", { timeout = 0.2 })
        out.slow = e3
        local _, e4 = ctx.http.get(ctx.config.base .. "/big?mb=40")
        out.big = e4
        return out
      ]])
      assert.is_string(res.refused)
      assert.is_string(res.badjson)
      assert.matches("timeout", res.slow:lower(), 1, true)
      assert.matches("33554432", res.big, 1, true)
    end)

    it("keeps many requests in flight from many jobs at once", function()
      local jobs = {}
      for i = 1, 200 do
        jobs[i] = { source = [[
          local ctx = ...
          local n = 0
          for items in ctx.paginate{ url = ctx.config.base .. "/link", query = { per_page = 10 } } do
            n = n + #items
          end
          return n
        ]], allow_hosts = { "127.0.0.1" }, config = { base = peer:url() } }
      end
      for _, r in ipairs(T.run(jobs)) do
        assert.are.equal("succeeded", r.status, r.error)
        assert.are.equal(95, r.result)
      end
    end)
  end)

  describe("ctx.paginate", function()
    local styles = {
      link = [[ctx.paginate{ url = base .. "/link", query = { per_page = 10 } }]],
      cursor = [[ctx.paginate{ url = base .. "/cursor", style = "cursor", query = { limit = 10 },
        items = function(b) return b.members end,
        next_cursor = function(b) return b.response_metadata.next_cursor end }]],
      offset = [[ctx.paginate{ url = base .. "/offset", style = "offset", offset_param = "startAt",
        limit_param = "maxResults", page_size = 10, items = function(b) return b.values end,
        total = function(b) return b.total end }]],
      next_token = [[ctx.paginate{ url = base .. "/token", style = "next_token",
        items = function(b) return b.items end, next_token = function(b) return b.nextPageToken end }]],
      next_url = [[ctx.paginate{ url = base .. "/nexturl", style = "next_token",
        items = function(b) return b.value end, next_url = function(b) return b["@odata.nextLink"] end }]],
    }
    for name, iter in pairs(styles) do
      it("visits every item exactly once in " .. name .. " style", function()
        local res = ok(([[
          local ctx = ...
          local base = ctx.config.base
          local ids, pages = {}, 0
          for items in %s do
            pages = pages + 1
            for _, it in ipairs(items) do ids[#ids + 1] = it.id end
          end
          return { ids = ids, pages = pages }
        ]]):format(iter))
        assert.are.equal(95, #res.ids)
        for i = 1, 95 do assert.are.equal(i, res.ids[i]) end
        assert.are.equal(10, res.pages)
      end)
    end

    it("raises with the URL and status on a non-2xx page", function()
      local r = run([[
        local ctx = ...
        for _ in ctx.paginate{ url = ctx.config.base .. "/status", query = { code = 503 } } do end
      ]])
      assert.are.equal("failed", r.status)
      assert.matches("/status: HTTP 503", r.error, 1, true)
    end)

    it("rejects an unknown style", function()
      local r = run("local ctx = ... ctx.paginate{ url = 'http://x', style = 'pages' }")
      assert.matches("unknown style 'pages'", r.error, 1, true)
    end)
  end)

  describe("ctx.emit", function()
    it("adds the evidence fields; the checksum ignores key order", function()
      local _, r = ok([[
        local ctx = ...
        ctx.emit{ resource_type = "github.member", resource_id = 7, data = { b = 1, a = { x = "y" } } }
        ctx.emit{ resource_type = "github.member", resource_id = "8", data = { a = { x = "y" }, b = 1 } }
      ]], { integration_id = "int-1", organization_id = "org-1" })
      local a, b = r.items[1], r.items[2]
      for _, f in ipairs({ "id", "organization_id", "integration_id", "provider_type",
                           "resource_type", "resource_id", "collected_at", "run_id",
                           "connector_version", "checksum", "data" }) do
        assert.is_not_nil(a[f], f)
      end
      assert.are.equal("org-1", a.organization_id)
      assert.are.equal("int-1", a.integration_id)
      assert.are.equal("7", a.resource_id)
      assert.matches("^%x+$", a.checksum)
      assert.are.equal(64, #a.checksum)
      assert.are.equal(a.checksum, b.checksum)
      assert.are_not.equal(a.id, b.id)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", a.collected_at)
    end)

    it("rejects malformed items with the field named", function()
      for code, msg in pairs({
        ["ctx.emit{ resource_id = '1', data = {} }"] = "field 'resource_type' is missing",
        ["ctx.emit{ resource_type = 'x', data = {} }"] = "field 'resource_id' is missing",
        ["ctx.emit{ resource_type = 'x', resource_id = '1', data = 'no' }"] = "'data' must be a table",
        ["ctx.emit{ resource_type = 'X Y', resource_id = '1', data = {} }"] = "must use [a-z0-9_.:-]",
        ["ctx.emit{ resource_type = 'x', resource_id = '1', data = {}, extra = 1 }"] = "unknown field 'extra'",
        ["ctx.emit{ resource_type = 'x', resource_id = '1', data = { n = 0/0 } }"] = "data.n: NaN",
        ["ctx.emit{ resource_type = 'x', resource_id = '1', data = { f = print or function() end } }"] = "data.f: a function value",
        ["local t = {} t.self = t ctx.emit{ resource_type = 'x', resource_id = '1', data = t }"] = "nested deeper",
      }) do
        local r = run("local ctx = ... " .. code)
        assert.are.equal("failed", r.status, code)
        assert.matches(msg, r.error, 1, true)
      end
    end)
  end)

  describe("ctx.checkpoint", function()
    it("reads the stored cursor and reports the one set", function()
      local res, r = ok([[
        local ctx = ...
        local before = ctx.checkpoint.get()
        ctx.checkpoint.set({ cursor = before.cursor + 1, at = "t" })
        return ctx.checkpoint.get()
      ]], { checkpoint = { cursor = 41 } })
      assert.are.same({ cursor = 42, at = "t" }, res)
      assert.are.same({ cursor = 42, at = "t" }, r.checkpoint)
    end)

    it("is nil when nothing is stored", function()
      assert.is_true(ok("local ctx = ... return ctx.checkpoint.get() == nil"))
    end)
  end)

  describe("ctx.json", function()
    it("round-trips and fails softly on bad input", function()
      local res = ok([[
        local ctx = ...
        local v = ctx.json.decode('{"a":[1,2,{"b":null}]}')
        local bad, err = ctx.json.decode('{"a":')
        local huge, herr = ctx.json.decode(string.rep(" ", 1024) .. "1")
        return { a2 = v.a[2], isnull = v.a[3].b == ctx.json.null, bad = bad == nil, err = err,
                 enc = ctx.json.encode({ 1, 2 }), nonstr = select(2, ctx.json.decode(42)) }
      ]])
      assert.are.equal(2, res.a2)
      assert.is_true(res.isnull)
      assert.is_true(res.bad)
      assert.is_string(res.err)
      assert.are.equal("[1,2]", res.enc)
      assert.matches("expected a JSON string", res.nonstr, 1, true)
    end)
  end)

  describe("ctx.crypto and ctx.url", function()
    it("computes published digests and encodings", function()
      local res = ok([[
        local ctx = ...
        local c, u = ctx.crypto, ctx.url
        return {
          sha = c.sha256("abc"),
          hmac = c.hmac_sha256("Jefe", "what do ya want for nothing?"),
          b64 = c.base64_encode("foobar"), unb64 = c.base64_decode("Zm9vYmE="),
          badb64 = select(2, c.base64_decode("!!!")),
          hex = c.hex_encode("\1\255"), unhex = c.hex_decode("41ff") == "A\255",
          enc = u.encode("a b/c~"), dec = u.decode("a%20b+c"),
          q = u.build_query{ z = "1", a = { "x", "y" } },
          p = u.parse("https://user@API.example.com:8443/v1/items?page=2&q=a%20b#frag"),
        }
      ]])
      assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", res.sha)
      assert.are.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", res.hmac)
      assert.are.equal("Zm9vYmFy", res.b64)
      assert.are.equal("fooba", res.unb64)
      assert.are.equal("invalid base64", res.badb64)
      assert.are.equal("01ff", res.hex)
      assert.is_true(res.unhex)
      assert.are.equal("a%20b%2Fc~", res.enc)
      assert.are.equal("a b c", res.dec)
      assert.are.equal("a=x&a=y&z=1", res.q)
      assert.are.same({ scheme = "https", host = "api.example.com", port = 8443, path = "/v1/items",
        query = { page = "2", q = "a b" }, fragment = "frag" }, res.p)
    end)
  end)

  describe("ctx.log", function()
    it("writes structured JSON lines with job fields and redacts secrets", function()
      local _, _, logs = ok([[
        local ctx = ...
        ctx.log.warn("calling with Authorization: Bearer abcdef0123456789xyz", { page = 3, ok = true })
      ]], { integration_id = "int-9" })
      local line = logs[#logs]
      assert.are.equal("warn", line.level)
      assert.are.equal(3, line.page)
      assert.are.equal(true, line.ok)
      assert.are.equal("int-9", line.integration_id)
      assert.is_string(line.job_id)
      assert.is_nil(line.msg:find("abcdef0123456789xyz", 1, true))
      assert.matches("[REDACTED]", line.msg, 1, true)
    end)

    it("rejects an unknown level", function()
      local r = run("local ctx = ... ctx.log.loud('x')")
      assert.are.equal("failed", r.status)
    end)
  end)

  describe("ctx.sleep and time", function()
    it("sleeps without blocking other jobs and tells the time", function()
      -- The sleeper finishes after the second job although it started first:
      -- the loop served the other job while the sleeper waited.
      local results = T.run({
        { source = "local ctx = ... ctx.sleep(0.2) return ctx.time()" },
        { source = "local ctx = ... return { ctx.isotime(0), ctx.time() }" },
      })
      assert.are.equal("1970-01-01T00:00:00.000Z", results[2].result[1])
      assert.is_true(results[1].result > results[2].result[2])
    end)

    it("refuses a negative sleep", function()
      local r = run("local ctx = ... ctx.sleep(-1)")
      assert.matches("between 0 and", r.error, 1, true)
    end)
  end)

  describe("ctx.config", function()
    it("is the integration's config", function()
      assert.are.equal("acme", ok("local ctx = ... return ctx.config.org", { config = { org = "acme" } }))
    end)
  end)
end)
