-- docs/lua-api.md is complete: every member of ctx that a job really gets
-- (enumerated inside a job, through the real sandbox) has a heading in the
-- reference, and every ctx member the reference has a heading for exists.
-- A heading names a member as `ctx.a.b` (functions with their arguments:
-- `### ctx.http.get(url [, opts])`); a namespace (`## ctx.http`) documents
-- the table, its members need headings of their own.
local T = require "junction.testing"
local util = require "helpers.util"

local DOC = "docs/lua-api.md"

-- "ctx.x.y" -> "table"/"function"/"string"/..., for everything reachable
-- from ctx; ctx.config is the integration's data, not API.
local function runtime_members()
  local r = T.run{ source = [[
    local ctx = ...
    local out, seen = {}, {}
    local function walk(t, prefix)
      for k, v in pairs(t) do
        local name = prefix .. "." .. tostring(k)
        out[name] = type(v)
        if type(v) == "table" and name ~= "ctx.config" and not seen[v] then
          seen[v] = true
          walk(v, name)
        end
      end
    end
    walk(ctx, "ctx")
    return out
  ]] }
  assert.are.equal("succeeded", r.status, r.error)
  return r.result
end

-- Headings that name a ctx member: "ctx.x.y" -> heading line.
local function documented_members()
  local out = {}
  for line in util.read_file(DOC):gmatch("[^\n]+") do
    local name = line:match("^#+%s+(ctx%.[%w_%.]+)")
    if name then out[name] = line end
  end
  return out
end

describe("docs/lua-api.md", function()
  local members, documented

  setup(function()
    members = runtime_members()
    documented = documented_members()
  end)

  it("finds the members on both sides", function()
    assert.are.equal("function", members["ctx.http.get"])
    assert.are.equal("table", members["ctx.http"])
    assert.is_string(documented["ctx.http.get"])
    assert.is_string(documented["ctx.http"])
  end)

  it("documents every ctx member a job gets", function()
    local missing = {}
    for name, kind in pairs(members) do
      if not documented[name] then missing[#missing + 1] = name .. " (" .. kind .. ")" end
    end
    table.sort(missing)
    assert.are.same({}, missing, "members of ctx without a heading in " .. DOC)
  end)

  it("documents only members that exist", function()
    local stale = {}
    for name, heading in pairs(documented) do
      if not members[name] then stale[#stale + 1] = heading end
    end
    table.sort(stale)
    assert.are.same({}, stale, "headings in " .. DOC .. " for members ctx does not have")
  end)

  it("documents a namespace's members, not only the namespace", function()
    for name, kind in pairs(members) do
      if kind == "table" and name ~= "ctx.config" then
        local n = 0
        for other in pairs(members) do
          if other:sub(1, #name + 1) == name .. "." then n = n + 1 end
        end
        assert.is_true(n > 0, name .. " has no members")
      end
    end
  end)
end)
