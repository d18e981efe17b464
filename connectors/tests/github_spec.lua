-- Specs of connectors/github.lua, the authoring kit's worked example. They
-- run inside the runtime (real sandbox, real ctx) by
--
--   junction connector test connectors/github.lua
--
-- offline, answering every ctx.http call from the exchanges recorded in
-- tests/fixtures/github/ against the provider simulator (tools/simulator):
--
--   node tools/simulator/server.js --members 30 --repos 12 --token sim-token
--   SIM_TOKEN=sim-token junction connector test connectors/github.lua --record \
--     --config '{"organization": "acme", "base_url": "http://127.0.0.1:PORT", "per_page": 10}' \
--     --token-env SIM_TOKEN --allow-host 127.0.0.1
--
-- `junction connector deploy connectors/github.lua` runs them too, and
-- refuses the deploy when one fails.
local T = require "junction.testing"
local kit = assert(T.kit(), "run this spec with `junction connector test connectors/github.lua`")

local function by_type(items)
  local out = {}
  for _, item in ipairs(items) do
    out[item.resource_type] = out[item.resource_type] or {}
    table.insert(out[item.resource_type], item)
  end
  return out
end

describe("github connector", function()
  it("declares valid metadata", function()
    local ok, errors, meta = T.validate(kit.file)
    assert.is_true(ok, errors)
    assert.are.equal("github", meta.provider_type)
    assert.are.same({ "api.github.com" }, meta.egress)
  end)

  it("tests the connection to the organization", function()
    local r = T.run{ kit = true, entry = "test_connection" }
    assert.are.equal("succeeded", r.status, r.error)
    assert.is_true(r.result.success, r.result.message)
    assert.are.equal(kit.config.organization, r.result.details.organization)
  end)

  it("collects the organization, its members and its repositories", function()
    local r = T.run{ kit = true, entry = "collect_evidence" }
    assert.are.equal("succeeded", r.status, r.error)
    if r.replay_misses then assert.are.same({}, r.replay_misses) end
    local items = by_type(r.items)
    assert.are.equal(1, #items["github.organization"])
    assert.are.equal(r.result.members, #items["github.member"])
    assert.are.equal(r.result.repositories, #items["github.repository"])
    assert.is_true(r.result.members > kit.config.per_page, "more members than one page")
    for _, m in ipairs(items["github.member"]) do
      assert.is_boolean(m.data.two_factor_enabled)
      assert.is_string(m.data.role)
    end
    for _, repo in ipairs(items["github.repository"]) do
      assert.is_truthy(repo.data.protection_status == "protected"
        or repo.data.protection_status == "unprotected", repo.resource_id)
    end
    -- the checkpoint records the complete run
    assert.are.equal(r.result.members, r.checkpoint.members)
  end)

  it("reports a configuration error without calling the API", function()
    local r = T.run{ kit = true, entry = "collect_evidence", config = { organization = "acme", per_page = 0 },
                     args = { { organization = "acme", per_page = 0 } } }
    assert.are.equal("failed", r.status)
    assert.matches("config.per_page must be a whole number from 1 to 100, got 0", r.error, 1, true)
  end)
end)
