-- Junction side of the connector-concurrency benchmark (tools/bench/concurrency).
--
--   junction script tools/bench/concurrency.lua --url http://127.0.0.1:PORT [--token T]
--       [--jobs N] [--org NAME] [--pages K] [--per-page P] [--members M] [--mode paginate|get]
--
-- Builds N job specs running the same connector script and runs them all at
-- once with testing.run (one event loop, N sandboxes alive together). Each job
-- pages GET /orgs/{org}/members?per_page=P, following Link rel="next" for K
-- pages (ctx.paginate, or ctx.http.get with its own Link parsing in --mode
-- get), decodes each page and counts the members whose login is a string: the
-- same work as the Node.js peer (concurrency_node.js). Every job must succeed
-- with exactly K pages and min(K * P, M) items.
--
-- Prints one JSON line on stdout:
--   {"runtime":"junction","jobs":..,"seconds":..,"jobs_per_s":..,"peak_rss_bytes":..,
--    "rss_per_job_bytes":..,"errors":.., ...}
-- - seconds: wall time of the testing.run call (creating every sandbox, running
--   every job to its end).
-- - peak_rss_bytes: VmHWM after the run.
-- - rss_per_job_bytes: (VmHWM - VmRSS before the run) / N.
local T = require "junction.testing"
local cjson = require "cjson"

local USAGE = "usage: junction script tools/bench/concurrency.lua --url URL [--token T] " ..
    "[--jobs N] [--org NAME] [--pages K] [--per-page P] [--members M] [--mode paginate|get]"

local o = { url = nil, token = "sim-token", jobs = 10000, org = "acme", pages = 1,
  per_page = 100, members = 2500, mode = "paginate" }
local ints = { ["--jobs"] = "jobs", ["--pages"] = "pages", ["--per-page"] = "per_page",
  ["--members"] = "members" }
local strs = { ["--url"] = "url", ["--token"] = "token", ["--org"] = "org", ["--mode"] = "mode" }

local function die(msg)
  io.stderr:write("concurrency.lua: ", msg, "\n", USAGE, "\n")
  os.exit(2)
end

local i = 1
while i <= #arg do
  local a, v = arg[i], nil
  local eq = a:find("=", 1, true)
  if eq then a, v = a:sub(1, eq - 1), a:sub(eq + 1) end
  if a == "--help" or a == "-h" then print(USAGE) os.exit(0) end
  if not ints[a] and not strs[a] then die("unknown argument " .. a) end
  if v == nil then
    i = i + 1
    v = arg[i]
    if v == nil then die(a .. " needs a value") end
  end
  if ints[a] then
    if not v:match("^%d+$") then die(a .. " expects a non-negative integer") end
    o[ints[a]] = tonumber(v)
  else
    o[strs[a]] = v
  end
  i = i + 1
end
if not o.url then die("--url is required") end
o.url = o.url:gsub("/+$", "")
local host = o.url:match("^http://([^/:]+)")
if not host then die("--url must be an http:// URL") end
if o.mode ~= "paginate" and o.mode ~= "get" then die("--mode must be paginate or get") end
if o.jobs < 1 or o.pages < 1 or o.per_page < 1 then die("counts must be >= 1") end

-- The connector script, one source shared by every job. Parameters are
-- spliced in as literals so that jobs differ in nothing but their state.
local PAGINATE_SOURCE = [[
local ctx = ...
local pages, items = 0, 0
for page in ctx.paginate{ url = %q, query = { per_page = %d } } do
  for _, member in ipairs(page) do
    if type(member.login) == "string" then items = items + 1 end
  end
  pages = pages + 1
  if pages == %d then break end
end
return { pages = pages, items = items }
]]

local GET_SOURCE = [[
local ctx = ...
local function next_link(header)
  if not header then return nil end
  for part in header:gmatch("[^,]+") do
    local target = part:match('^%%s*<([^>]*)>%%s*;%%s*rel="next"')
    if target then return target end
  end
  return nil
end
local url = %q .. "?per_page=" .. %d
local pages, items = 0, 0
while url and pages < %d do
  local res, err = ctx.http.get(url)
  if not res then error(err) end
  if res.status ~= 200 then error("GET " .. url .. " -> HTTP " .. res.status) end
  local page = res:json()
  if type(page) ~= "table" then error("expected a JSON array") end
  for _, member in ipairs(page) do
    if type(member.login) == "string" then items = items + 1 end
  end
  pages = pages + 1
  url = next_link(res.headers["link"])
end
return { pages = pages, items = items }
]]

local members_url = o.url .. "/orgs/" .. o.org .. "/members"
local source = string.format(o.mode == "get" and GET_SOURCE or PAGINATE_SOURCE, members_url,
  o.per_page, o.pages)
local expected_items = math.min(o.pages * o.per_page, o.members)
local expected_pages = math.min(o.pages, math.ceil(o.members / o.per_page))

local specs = {}
local allow = { host }
for j = 1, o.jobs do
  specs[j] = {
    name = "bench_members.lua",
    source = source,
    token = o.token,
    allow_hosts = allow,
    discard_items = true,
  }
end

collectgarbage()
collectgarbage()
local before = T.rss()
local t0 = T.now_ms()
local results = T.run(specs)
local seconds = (T.now_ms() - t0) / 1000
local after = T.rss()

local errors, pages_total, items_total, lua_peak_max, lua_peak_sum, cpu_ms = 0, 0, 0, 0, 0, 0
local samples = {}
for j = 1, o.jobs do
  local r = results[j]
  local res = r.result
  local good = r.ok and type(res) == "table" and res.pages == expected_pages and
      res.items == expected_items
  if good then
    pages_total = pages_total + res.pages
    items_total = items_total + res.items
  else
    errors = errors + 1
    if #samples < 5 then
      samples[#samples + 1] = r.error or ("unexpected result " .. cjson.encode(res or cjson.null))
    end
  end
  lua_peak_sum = lua_peak_sum + r.memory_peak
  if r.memory_peak > lua_peak_max then lua_peak_max = r.memory_peak end
  cpu_ms = cpu_ms + r.cpu_ms
end
for _, s in ipairs(samples) do io.stderr:write("concurrency.lua: job error: ", s, "\n") end

local out = {
  runtime = "junction",
  jobs = o.jobs,
  seconds = tonumber(string.format("%.3f", seconds)),
  jobs_per_s = tonumber(string.format("%.1f", o.jobs / seconds)),
  peak_rss_bytes = after.peak,
  rss_per_job_bytes = math.floor((after.peak - before.current) / o.jobs + 0.5),
  errors = errors,
  concurrency = o.jobs,
  pages_per_job = o.pages,
  per_page = o.per_page,
  pages_fetched = pages_total,
  items = items_total,
  expected_items_per_job = expected_items,
  baseline_rss_bytes = before.current,
  lua_heap_peak_per_job_avg = math.floor(lua_peak_sum / o.jobs + 0.5),
  lua_heap_peak_per_job_max = lua_peak_max,
  lua_cpu_ms_total = math.floor(cpu_ms + 0.5),
  mode = o.mode,
  junction = T.version,
}
-- cjson would print the numbers above 1e14 in exponent form; none are that large.
print(cjson.encode(out))
os.exit(errors == 0 and 0 or 1)
