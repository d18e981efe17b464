-- Cluster mode from a spec: several `junction run` processes (helpers.runtime
-- instances, each with its own data directory) sharing one real
-- redis-server, and redis-cli to look at what they wrote.
--
--   local cluster = require "helpers.cluster"
--   local redis = cluster.redis(7)            -- database 7 of the ctest fixture
--   redis:flush()
--   local node = cluster.node(redis, { integrations_file = path, conf = {...} })
--   redis:cmd("XLEN", "evidence.raw")         -- trimmed output of redis-cli --raw
--   local rows = redis:lines("SMEMBERS", "x")
--
-- The fixture's server comes from JUNCTION_TEST_REDIS_URL (ctest sets it for
-- the specs that name it). A spec that must pause or kill Redis starts its own
-- with cluster.private_redis(dir), on a unix socket: nothing else shares it.
local runtime = require "helpers.runtime"
local util = require "helpers.util"

local shell_quote, sh = util.shell_quote, util.sh

local _M = {}
local Redis = {}
Redis.__index = Redis

local function fixture()
  local url = os.getenv("JUNCTION_TEST_REDIS_URL")
  assert(url and url ~= "", "JUNCTION_TEST_REDIS_URL is not set: run the spec through ctest")
  local host, port = url:match("^redis://([^:/]+):(%d+)")
  return host, port
end

-- A database of the fixture's server.
function _M.redis(db)
  local host, port = fixture()
  return setmetatable({ url = "redis://" .. host .. ":" .. port .. "/" .. db,
                        args = { "-h", host, "-p", port, "-n", tostring(db) } }, Redis)
end

-- A private server on a unix socket in dir (pid file there too).
function _M.private_redis(dir)
  local sock = dir .. "/redis.sock"
  sh("redis-server --port 0 --unixsocket " .. shell_quote(sock) .. " --unixsocketperm 700" ..
    " --save '' --appendonly no --dir " .. shell_quote(dir) .. " --pidfile " ..
    shell_quote(dir .. "/redis.pid") .. " --logfile " .. shell_quote(dir .. "/redis.log") ..
    " --daemonize yes")
  local r = setmetatable({ url = "unix://" .. sock, args = { "-s", sock }, dir = dir }, Redis)
  assert(runtime.wait(function() return r:cmd("PING") == "PONG" end, 10),
    "the private redis-server did not start: " .. util.read_file(dir .. "/redis.log"))
  return r
end

function Redis:stop()
  local pid = tonumber(util.read_file(self.dir .. "/redis.pid"):match("%d+"))
  if pid then
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    runtime.wait(function() return not util.read_file(self.dir .. "/redis.pid"):match("%d") end, 10)
  end
end

local function command(self, args)
  local parts = { "redis-cli", "--raw" }
  for _, a in ipairs(self.args) do parts[#parts + 1] = shell_quote(a) end
  for _, a in ipairs(args) do parts[#parts + 1] = shell_quote(a) end
  return table.concat(parts, " ") .. " 2>&1"
end

-- One command; its output without the trailing newline.
function Redis:cmd(...)
  return (sh(command(self, { ... })):gsub("\n$", ""))
end

function Redis:int(...)
  return tonumber(self:cmd(...))
end

function Redis:lines(...)
  return util.lines(sh(command(self, { ... })))
end

function Redis:flush()
  assert(self:cmd("FLUSHDB") == "OK")
end

-- Every value stored (strings, hashes, sets, sorted sets, streams), as text:
-- for checks that a secret never reached Redis.
function Redis:dump()
  local parts = {}
  for _, key in ipairs(self:lines("--scan")) do
    local t = self:cmd("TYPE", key)
    local read = ({ string = { "GET" }, hash = { "HGETALL" }, set = { "SMEMBERS" },
                    zset = { "ZRANGE", "0", "-1" }, list = { "LRANGE", "0", "-1" },
                    stream = { "XRANGE", "-", "+" } })[t]
    if read then
      local args = { read[1], key }
      for i = 2, #read do args[#args + 1] = read[i] end
      parts[#parts + 1] = key .. "\n" .. sh(command(self, args))
    end
  end
  return table.concat(parts, "\n")
end

-- A node: a runtime instance in cluster mode on `redis`. opts: conf (extra
-- lines), connectors, env, integrations_file.
function _M.node(redis, opts)
  opts = opts or {}
  -- The machines that run the tests are loaded (sanitizers, parallel builds):
  -- Redis deadlines of 1.5 s, not production's 0.5 s, so that a slow moment
  -- does not turn into a retried job where a test counts runs.
  local conf = { "redis_url = " .. redis.url, "redis_timeout_ms = 300" }
  if opts.integrations_file then conf[#conf + 1] = "integrations_file = " .. opts.integrations_file end
  for _, l in ipairs(opts.conf or {}) do conf[#conf + 1] = l end
  return runtime.new{ conf = conf, connectors = opts.connectors or {}, env = opts.env }
end

-- Lines of a node's log that are JSON objects with msg `msg`.
function _M.log_lines(node, msg)
  local out = {}
  for _, l in ipairs(node:log_lines()) do
    if l.msg == msg then out[#out + 1] = l end
  end
  return out
end

return _M
