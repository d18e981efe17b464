-- The dashboard (/ui) of `junction run` in headless Chromium (Debian's
-- chromium, driven by playwright-core from tools/browser):
--  * the page is served with a strict Content-Security-Policy and
--    X-Content-Type-Options, needs no token itself, and runs without a
--    console error (no inline script the policy would refuse);
--  * an organization token shows that organization's integrations and not
--    another organization's; the token stays in sessionStorage, out of the URL;
--  * the simulator's fault injection drives one integration to failure and
--    its status changes on the page without a reload (polling);
--  * an error text holding markup (a connector failing with a proxy's HTML
--    error page) shows as text and runs nothing;
--  * with the admin token every integration shows; the page is saved as
--    a screenshot (docs/images/dashboard.png is refreshed with
--    JUNCTION_UPDATE_SCREENSHOTS=1);
--  * the integrations' credential (a canary) appears nowhere: not in the
--    API's answers the page read, not in the log.
local cjson = require "cjson"
local runtime = require "helpers.runtime"
local simulator = require "helpers.simulator"
local util = require "helpers.util"
local shell_quote, sh = util.shell_quote, util.sh

local CANARY = "CANARY-DASH-simtoken-7c2d41"
local ADMIN = "CANARY-DASH-admin-token-0b9e8f7a6d5c4b3a"

local RELAY = [[
local c = connector {
  provider_type = "relay", display_name = "Relay", description = "fails behind a proxy",
  version = "1.0.0", auth_types = { "none" }, capabilities = { "evidence_collection" },
  rate_limits = { requests_per_second = 1 }, egress = { "relay.example.com" },
  documentation_url = "https://example.com",
}
function c.test_connection() return { success = false } end
function c.collect_evidence(ctx)
  error("upstream answered <h1>502 Bad Gateway</h1><img src=x onerror=window.__junctionXss=1>", 0)
end
return c
]]

local function require_tools()
  assert(io.open("/usr/bin/chromium", "rb"),
    "chromium is needed (Debian package chromium; tools/install-deps)")
  local f = io.open("tools/browser/node_modules/playwright-core/package.json", "rb")
  if not f then
    error("the browser peer is not installed: run " ..
      "`npm ci --prefix tools/browser --no-audit --no-fund` (tools/test does)", 0)
  end
  f:close()
end

local function curl_head(url)
  return sh("curl -s -D - -o /dev/null " .. shell_quote(url))
end

describe("the dashboard in headless Chromium", function()
  local sim, rt, port, org_token

  setup(function()
    require_tools()
    sim = simulator.start{ members = 30, repos = 10, orgs = { "acme", "globex", "initech" },
                           tokens = { CANARY } }
    rt = runtime.new{
      connectors = { "github.lua" },
      env = { SIM_TOKEN = CANARY },
      conf = {
        "allow_hosts = 127.0.0.1",
        "integrations_file = INTEGRATIONS",
        "api_admin_token_file = ADMIN_FILE",
        "queue_max_attempts = 1",
        "http_server_rate_per_s = 0",
        "alert_sinks = log",
        "health_bucket_ms = 100",
        "health_min_requests = 3",
        "health_hold_s = 0",
      },
    }
    local function gh(id, org, sim_org)
      return { id = id, organization_id = org, provider = "github", token_env = "SIM_TOKEN",
               interval_s = 1,
               config = { organization = sim_org, base_url = sim:url(),
                          resource_types = { "github.organization", "github.member" } } }
    end
    util.write_file(rt.dir .. "/integrations.json", cjson.encode({
      gh("github-acme-prod", "acme-org", "acme"),
      gh("github-acme-oss", "acme-org", "globex"),
      gh("github-initech", "initech-org", "initech"),
      -- its connector fails with markup in the error (as a proxy's error page)
      { id = "relay-initech", organization_id = "initech-org", provider = "relay",
        interval_s = 1 },
      -- no connector loaded for it: it never runs, its status stays unknown
      { id = "jira-initech", organization_id = "initech-org", provider = "jira",
        token_env = "SIM_TOKEN", interval_s = 3600 },
    }))
    rt:connector("relay.lua", RELAY)
    util.write_file(rt.dir .. "/admin", ADMIN .. "\n")
    local conf = util.read_file(rt.conf):gsub("INTEGRATIONS", rt.dir .. "/integrations.json")
        :gsub("ADMIN_FILE", rt.dir .. "/admin")
    util.write_file(rt.conf, conf)
    local code, out, err = rt:cli("tokens", "create", "--org", "acme-org", "--scope", "read")
    assert.are.equal(0, code, err)
    org_token = cjson.decode(out).token
    rt:start()
    port = rt:api_port(30)
  end)

  teardown(function()
    if rt then
      rt:stop()
      rt:log_free_of("CANARY", org_token)
      rt:cleanup()
    end
    if sim then sim:stop() end
  end)

  it("serves the page with a strict policy and no token", function()
    local head = curl_head("http://127.0.0.1:" .. port .. "/ui"):lower()
    assert.truthy(head:match("^http/1%.1 200"))
    assert.truthy(head:find("content-security-policy: default-src 'none'; script-src 'self';", 1,
      true))
    assert.truthy(head:find("x-content-type-options: nosniff", 1, true))
    assert.truthy(head:find("content-type: text/html", 1, true))
    head = curl_head("http://127.0.0.1:" .. port .. "/ui/app.js"):lower()
    assert.truthy(head:find("content-type: text/javascript", 1, true))
    -- the data is not public
    assert.are.equal("401", sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:" ..
      port .. "/v1/health"))
  end)

  it("shows an organization its integrations, live, and another organization's not", function()
    -- The page is always photographed (the browser run must get that far);
    -- the copy in docs/ is refreshed only on request, so a test run leaves
    -- the checkout as it was.
    local base = os.tmpname()
    local shot = base .. ".png"
    finally(function()
      os.remove(base)
      if shot ~= "docs/images/dashboard.png" then os.remove(shot) end
    end)
    if os.getenv("JUNCTION_UPDATE_SCREENSHOTS") == "1" then
      shot = "docs/images/dashboard.png"
      os.execute("mkdir -p docs/images")
    end
    local config = {
      ui_url = "http://127.0.0.1:" .. port .. "/ui",
      org_token = org_token,
      admin_token = ADMIN,
      fail = {
        integration = "github-acme-prod",
        fault_url = sim:url("/_sim/faults"),
        fault = { path_prefix = "/orgs/acme", mode = "server_error", count = 1000000 },
      },
      -- (the other github integrations share the provider's breaker: their
      -- status may move too, so only these two are waited for)
      expect_status = { ["github-acme-prod"] = "unhealthy", ["jira-initech"] = "unknown",
                        ["relay-initech"] = "unhealthy" },
      xss = "relay-initech",
      screenshot = shot,
    }
    local out = sh("node tools/browser/dashboard.mjs " .. shell_quote(cjson.encode(config)) ..
      " 2>&1")
    local ok, seen = pcall(cjson.decode, out:match("([^\n]+)\n*$"))
    assert(ok and type(seen) == "table", "the browser run failed: " .. out)

    assert.are.equal(200, seen.page_status)
    assert.truthy(seen.headers["content-security-policy"]:find("script-src 'self'", 1, true))
    assert.are.equal("nosniff", seen.headers["x-content-type-options"])
    assert.are.same({}, seen.console_errors)

    -- the organization token: its two integrations, nothing of initech-org
    local ids = {}
    for _, r in ipairs(seen.org_rows) do
      ids[#ids + 1] = r.id
      assert.are.equal("acme-org", r.org)
    end
    table.sort(ids)
    assert.are.same({ "github-acme-oss", "github-acme-prod" }, ids)
    assert.are.equal(org_token, seen.storage_token)
    assert.is_false(seen.token_in_url)

    -- the status changed on the page without a reload
    assert.are.equal("healthy", seen.before)
    assert.are.equal("unhealthy", seen.after)
    assert.truthy(seen.after_class:find("status-unhealthy", 1, true))
    assert.is_false(seen.reloaded)
    assert.truthy(seen.updated:match("^updated "))
    -- the fault's errors: the 502s, or once the provider's breaker opened
    -- (a slow run reaches it before the status flips) the calls it refused
    assert.truthy(seen.recent_errors:find("http_5xx", 1, true) or
                  seen.recent_errors:find("circuit_open", 1, true),
                  "recent errors: " .. tostring(seen.recent_errors))
    assert.are.equal(0, seen.html_in_rows)

    -- the admin token: all five; markup in an error is text, and runs nothing
    assert.are.equal(5, #seen.admin_rows)
    assert.truthy(seen.xss_text:find("<h1>502 Bad Gateway</h1><img src=x", 1, true))
    assert.is_false(seen.xss_ran)
    assert.are.equal(0, seen.html_in_rows_admin)
    local f = assert(io.open(shot, "rb"))
    assert.are.equal("\137PNG", f:read(4))
    f:close()
    assert.is_nil(out:find(CANARY, 1, true))
  end)
end)
