-- The sandbox: hostile and broken scripts get a clear error and leave the
-- process serving other jobs. Every script runs as a real job (junction.testing).
local T = require "junction.testing"

local function run(source, opts)
  opts = opts or {}
  opts.source = source
  return T.run(opts)
end

-- A well-behaved job run side by side with the hostile one: it must succeed.
local GOOD = [[
  local ctx = ...
  ctx.sleep(0.01)
  ctx.emit{ resource_type = "probe", resource_id = "1", data = { fine = true } }
  return "still serving"
]]

local function run_with_neighbour(source, opts)
  opts = opts or {}
  opts.source = source
  local results = T.run({ opts, { source = GOOD } })
  local neighbour = results[2]
  assert.are.equal("succeeded", neighbour.status, neighbour.error)
  assert.are.equal("still serving", neighbour.result)
  return results[1]
end

describe("the sandbox", function()
  describe("CPU budget", function()
    it("stops a plain infinite loop", function()
      local r = run_with_neighbour("while true do end", { cpu_ms = 100 })
      assert.are.equal("failed", r.status)
      assert.matches("CPU budget of 100 ms exceeded", r.error, 1, true)
    end)

    it("stops a JIT-hot numeric loop (the JIT is off in sandboxes)", function()
      local r = run_with_neighbour([[
        local x = 0
        for i = 1, 1e12 do x = x + i % 7 end
        return x
      ]], { cpu_ms = 100 })
      assert.are.equal("failed", r.status)
      assert.matches("CPU budget", r.error, 1, true)
    end)

    it("cannot be caught and ignored with pcall", function()
      local r = run_with_neighbour([[
        while true do pcall(function() while true do end end) end
      ]], { cpu_ms = 100 })
      assert.are.equal("failed", r.status)
      assert.matches("CPU budget", r.error, 1, true)
    end)

    it("cannot be escaped with an error handler that loops", function()
      local r = run_with_neighbour([[
        xpcall(function() while true do end end, function() while true do end end)
      ]], { cpu_ms = 100 })
      assert.are.equal("failed", r.status)
    end)

    it("stops a job waiting past its wall-clock timeout", function()
      local r = run_with_neighbour("local ctx = ... ctx.sleep(30)", { timeout_ms = 200 })
      assert.are.equal("failed", r.status)
      assert.matches("timed out", r.error, 1, true)
    end)
  end)

  describe("memory cap", function()
    it("stops a table memory bomb", function()
      local r = run_with_neighbour([[
        local t = {}
        for i = 1, 1e9 do t[i] = { i, i, i } end
      ]], { memory_mb = 16 })
      assert.are.equal("failed", r.status)
      assert.matches("memory limit of 16 MiB exceeded", r.error, 1, true)
      assert.is_true(r.memory_peak <= 17 * 1024 * 1024)
    end)

    it("stops a string.rep bomb", function()
      local r = run_with_neighbour("return #string.rep('x', 2^30)", { memory_mb = 16 })
      assert.are.equal("failed", r.status)
      assert.matches("memory limit", r.error, 1, true)
    end)

    it("stops string concatenation doubling", function()
      local r = run_with_neighbour("local s = 'x' while true do s = s .. s end", { memory_mb = 16 })
      assert.are.equal("failed", r.status)
      assert.matches("memory limit", r.error, 1, true)
    end)

    it("lets a script recover from a refused allocation it catches", function()
      local r = run([[
        local ok, err = pcall(string.rep, 'x', 2^30)
        return { ok = ok, err = tostring(err) }
      ]], { memory_mb = 16 })
      assert.are.equal("succeeded", r.status, r.error)
      assert.is_false(r.result.ok)
      assert.matches("not enough memory", r.result.err, 1, true)
    end)
  end)

  describe("code loading", function()
    it("refuses a bytecode chunk", function()
      local r = run("\27LJ\2\0\0\0")
      assert.are.equal("failed", r.status)
      assert.matches("bytecode is refused", r.error, 1, true)
    end)

    it("reports a syntax error with file and line", function()
      local r = run("local x = = 1", { name = "broken.lua" })
      assert.are.equal("failed", r.status)
      assert.matches("broken.lua:1:", r.error, 1, true)
    end)
  end)

  describe("removed globals", function()
    local removed = {
      "io", "debug", "ffi", "jit", "require", "package", "module", "load", "loadstring",
      "dofile", "loadfile", "getfenv", "setfenv", "collectgarbage", "newproxy", "rawset",
      "rawget", "gcinfo", "print",
    }
    for _, name in ipairs(removed) do
      it(name .. " is absent", function()
        local r = run("return " .. name .. " == nil")
        assert.are.equal("succeeded", r.status, r.error)
        assert.is_true(r.result)
      end)
    end

    it("os keeps only time, clock, date and difftime", function()
      local r = run([[
        local keys = {}
        for _, k in ipairs({ "execute", "exit", "getenv", "remove", "rename", "tmpname",
                             "setlocale" }) do
          if os[k] ~= nil then keys[#keys + 1] = k end
        end
        return { leaked = keys, time = type(os.time()), clock = type(os.clock()),
                 date = type(os.date("!%Y")) }
      ]])
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.same({}, r.result.leaked)
      assert.are.same({ time = "number", clock = "number", date = "string", leaked = {} },
        r.result)
    end)

    it("string.dump is absent, also through the string metatable", function()
      local r = run("return { string.dump == nil, ('').dump == nil }")
      assert.are.same({ true, true }, r.result)
    end)
  end)

  describe("read-only libraries", function()
    for _, code in ipairs({ "string.x = 1", "string.format = nil", "table.insert = print",
                            "math.pi = 3", "os.time = nil", "coroutine.wrap = nil" }) do
      it("refuses `" .. code .. "`", function()
        local r = run(code)
        assert.are.equal("failed", r.status)
        assert.matches("read-only", r.error, 1, true)
      end)
    end

    it("hides the string metatable", function()
      local r = run("return getmetatable('') == false")
      assert.is_true(r.result)
    end)

    it("cannot replace the metatable of a library proxy", function()
      local r = run("setmetatable(string, {})")
      assert.are.equal("failed", r.status)
      assert.matches("protected metatable", r.error, 1, true)
    end)

    it("gives each job its own state: globals set by one job are not seen by another", function()
      local results = T.run({ { source = "x_shared = 42 return x_shared" },
                              { source = "local ctx = ... ctx.sleep(0.01) return x_shared == nil" } })
      assert.are.equal(42, results[1].result)
      assert.is_true(results[2].result)
    end)
  end)

  describe("errors", function()
    it("contains deep recursion", function()
      local r = run_with_neighbour("local function f() return 1 + f() end return f()")
      assert.are.equal("failed", r.status)
      assert.matches("stack overflow", r.error, 1, true)
    end)

    it("never runs __tostring of an error object", function()
      local r = run_with_neighbour([[
        error(setmetatable({}, { __tostring = function() while true do end end }))
      ]], { cpu_ms = 100 })
      assert.are.equal("failed", r.status)
      assert.matches("error object is a table", r.error, 1, true)
    end)

    it("uses the message field of an error table", function()
      local r = run("error({ message = 'provider said no' })")
      assert.matches("provider said no", r.error, 1, true)
    end)

    it("ignores a __gc metamethod on an error object", function()
      local r = run_with_neighbour([[
        error(setmetatable({}, { __gc = function() while true do end end }))
      ]], { cpu_ms = 100 })
      assert.are.equal("failed", r.status)
    end)

    it("reports a non-string, non-table error object", function()
      local r = run("error(nil)")
      assert.are.equal("failed", r.status)
      assert.matches("nil", r.error, 1, true)
    end)
  end)

  describe("coroutines and yields", function()
    it("yields across pcall", function()
      local r = run([[
        local ctx = ...
        local ok = pcall(ctx.sleep, 0.01)
        local ok2, v = pcall(function() ctx.sleep(0.01) return "after" end)
        return { ok, ok2, v }
      ]])
      assert.are.equal("succeeded", r.status, r.error)
      assert.are.same({ true, true, "after" }, r.result)
    end)

    it("refuses to yield across a C call boundary with a clear error", function()
      local r = run_with_neighbour([[
        local ctx = ...
        table.sort({ 3, 2, 1 }, function(a, b) ctx.sleep(0) return a < b end)
      ]])
      assert.are.equal("failed", r.status)
      assert.matches("yield across", r.error, 1, true)
    end)

    it("refuses ctx calls that yield from a nested coroutine", function()
      local r = run([[
        local ctx = ...
        local co = coroutine.wrap(function() ctx.sleep(0) end)
        co()
      ]])
      assert.are.equal("failed", r.status)
      assert.matches("not from a coroutine it created", r.error, 1, true)
    end)

    it("lets a connector use its own coroutines", function()
      local r = run([[
        local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
        return gen() + gen() + gen()
      ]])
      assert.are.equal(6, r.result)
    end)

    it("fails a bare coroutine.yield in the job itself", function()
      local r = run("coroutine.yield(1)")
      assert.are.equal("failed", r.status)
      assert.matches("coroutine.yield", r.error, 1, true)
    end)
  end)

  describe("many jobs", function()
    it("runs 500 hostile and well-behaved jobs together; the good ones all succeed", function()
      local jobs = {}
      for i = 1, 500 do
        local kind = i % 4
        if kind == 0 then
          jobs[i] = { source = "while true do end", cpu_ms = 20 }
        elseif kind == 1 then
          jobs[i] = { source = "local t = {} while true do t[#t+1] = {} end", memory_mb = 4 }
        elseif kind == 2 then
          jobs[i] = { source = "error('broken on purpose')" }
        else
          jobs[i] = { source = GOOD }
        end
      end
      local results = T.run(jobs)
      for i, r in ipairs(results) do
        if i % 4 == 3 then
          assert.are.equal("succeeded", r.status, r.error)
        else
          assert.are.equal("failed", r.status)
        end
      end
    end)
  end)
end)
