-- The connector loader: every problem with a connector is reported with the
-- file, the field and the expected form; a valid connector yields its metadata.
local T = require "junction.testing"

local VALID = [[
local c = connector {
  provider_type = "acme_hr", display_name = "Acme HR", description = "People records",
  version = "1.2.3", auth_types = { "api_key" }, capabilities = { "evidence_collection" },
  required_scopes = { "read" }, rate_limits = { requests_per_second = 5, burst_size = 10 },
  egress = { "api.acme-hr.example", "*.acme-hr.example" },
  documentation_url = "https://docs.acme-hr.example",
}
function c.test_connection(ctx) return { success = true } end
function c.collect_evidence(ctx, config) end
return c
]]

local function with(replace_from, replace_to)
  local src, n = VALID:gsub(replace_from, replace_to)
  assert(n > 0, "fixture substitution did not apply: " .. replace_from)
  return src
end

local function rejected(src, ...)
  local ok, errors = T.validate_source("connectors/acme_hr.lua", src)
  assert.is_false(ok)
  for _, needle in ipairs({ ... }) do
    assert.is_truthy(errors:find(needle, 1, true), "expected '" .. needle .. "' in:\n" .. errors)
  end
  assert.is_truthy(errors:find("connectors/acme_hr.lua: ", 1, true))
  return errors
end

describe("connector contract", function()
  it("accepts a valid connector and returns its metadata", function()
    local ok, errors, meta = T.validate_source("connectors/acme_hr.lua", VALID)
    assert.is_true(ok, errors)
    assert.are.equal("acme_hr", meta.provider_type)
    assert.are.same({ "api.acme-hr.example", "*.acme-hr.example" }, meta.egress)
  end)

  it("accepts every connector shipped in connectors/", function()
    local p = io.popen("ls connectors/*.lua")
    for file in p:lines() do
      local ok, errors = T.validate(file)
      assert.is_true(ok, errors)
    end
    p:close()
  end)

  it("reports a syntax error with the line", function()
    rejected(with("function c.test_connection", "function c.test_connection("),
      "does not compile", "acme_hr.lua:")
  end)

  it("reports missing metadata fields", function()
    rejected(with('version = "1.2.3", ', ""), "field 'version' is missing")
    rejected(with('description = "People records",', ""), "field 'description' is missing")
  end)

  it("reports wrong types and forms", function()
    rejected(with('version = "1.2.3"', "version = 1.2"),
      "field 'version': expected a semantic version string")
    rejected(with('version = "1.2.3"', 'version = "1.2"'), "got \"1.2\"")
    rejected(with('capabilities = { "evidence_collection" }', 'capabilities = "evidence_collection"'),
      "field 'capabilities': expected a list of strings, got string")
    rejected(with('provider_type = "acme_hr"', 'provider_type = "Acme HR"'),
      "field 'provider_type': expected a lower-case identifier")
    rejected(with('documentation_url = "https://docs.acme%-hr.example"', 'documentation_url = "http://x"'),
      "expected an https:// URL")
    rejected(with('egress = { "api.acme%-hr.example"', 'egress = { "https://api.acme-hr.example/"'),
      "field 'egress'[1]: expected a lower-case host name")
    rejected(with("requests_per_second = 5", "requests_per_second = -5"),
      "field 'rate_limits.requests_per_second': expected a positive number")
    rejected(with("requests_per_second = 5", "requests_per_scond = 5"),
      "unknown key 'requests_per_scond'")
  end)

  it("reports unknown values and fields with a suggestion", function()
    rejected(with('auth_types = { "api_key" }', 'auth_types = { "apikey" }'),
      "field 'auth_types'[1]: unknown value 'apikey' (did you mean 'api_key'?)")
    rejected(with('required_scopes', 'required_scope'), "unknown field 'required_scope' (did you mean 'required_scopes'?)")
  end)

  it("requires the functions each capability needs", function()
    rejected(with("function c.collect_evidence%(ctx, config%) end", ""),
      "function 'collect_evidence' is missing: capability 'evidence_collection' requires it")
    rejected(with("function c.test_connection%(ctx%) return { success = true } end", ""),
      "function 'test_connection' is missing")
    rejected(with('capabilities = { "evidence_collection" }',
      'capabilities = { "evidence_collection", "webhook_receiver" }'),
      "field 'webhook' is missing", "function 'handle_webhook' is missing",
      "field 'webhook_events' is missing")
  end)

  it("reports every problem at once", function()
    local errors = rejected(with('version = "1.2.3", auth_types = { "api_key" },', ""),
      "field 'version' is missing", "field 'auth_types' is missing")
    local n = select(2, errors:gsub("\n", "\n"))
    assert.is_true(n >= 2)
  end)

  it("rejects a file that does not return a table, or runs forever while loading", function()
    rejected("return 42", "must return the connector table")
    rejected("while true do end", "CPU budget exceeded")
    rejected("local t = {} while true do t[#t + 1] = t end", "not enough memory")
  end)

  it("refuses bytecode", function()
    rejected("\27LJ\2", "bytecode is refused")
  end)

  it("reads metadata raw: a metatable cannot fake fields", function()
    rejected([[
      local c = setmetatable({}, { __index = function(_, k) return "x" end })
      function c.test_connection() end
      return c
    ]], "field 'provider_type' is missing")
  end)
end)
