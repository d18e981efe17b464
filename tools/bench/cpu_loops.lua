-- CPU-bound Lua loops for tools/bench/sandbox, one source for both sides.
--
--   dofile("cpu_loops.lua")                    -> { name = { source =, n = }, ... }
--   luajit [-joff] cpu_loops.lua NAME [hook]   -> prints the loop's CPU time in ms
--
-- Each source runs as a chunk called with (ctx, n): in a sandbox it is a job
-- (ctx first), in plain luajit ctx is nil. With `hook`, plain luajit installs
-- a count hook every 16384 instructions that reads a CPU clock, as the
-- sandbox's CPU-budget hook does.
local LOOPS = {
  numeric = {
    n = 30000000,
    source = [[
local _, n = ...
local x = 0
for i = 1, n do x = x + i % 7 end
return x
]],
  },
  strings = {
    n = 1000000,
    source = [[
local _, n = ...
local parts = {}
for i = 1, n do parts[#parts + 1] = tostring(i) .. "," end
return #table.concat(parts)
]],
  },
  tables = {
    n = 3000000,
    source = [[
local _, n = ...
local sum = 0
for i = 1, n do
  local t = { i, i + 1, name = "x" }
  sum = sum + #t
end
return sum
]],
  },
}

local name, mode = ...
if not name then return LOOPS end

local loop = LOOPS[name]
if not loop then
  io.stderr:write("cpu_loops.lua: unknown loop ", tostring(name), "\n")
  os.exit(2)
end
local f = assert(loadstring(loop.source, "=" .. name))
if mode == "hook" then
  debug.sethook(function() local _ = os.clock() end, "", 16384)
end
collectgarbage()
local t0 = os.clock()
f(nil, loop.n)
local ms = (os.clock() - t0) * 1000
debug.sethook()
print(string.format("%.1f", ms))
