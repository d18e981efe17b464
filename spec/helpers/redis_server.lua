-- A private redis-server for one spec: on a free loopback port, with a
-- password, no persistence, its files in a temporary directory. For tests
-- that kill and restart Redis (never do that to the shared ctest fixture).
--
--   local redis_server = require "helpers.redis_server"
--   local r = redis_server.start{ password = "..." }
--   r.url                      -- redis://:PASSWORD@127.0.0.1:PORT/0
--   r:pause(), r:resume()      -- SIGSTOP, SIGCONT: a server that hangs
--   r:kill9()                  -- SIGKILL, as a crash (nothing answers on the port)
--   r:restart()                -- the same port and password again, empty
--   r:cli("DBSIZE")            -- one redis-cli command, its output
--   r:stop()                   -- SIGTERM and remove the directory
local util = require "helpers.util"

local shell_quote, sh = util.shell_quote, util.sh

local _M = {}
local Server = {}
Server.__index = Server

local function alive(pid)
  return sh("kill -0 " .. pid .. " 2>/dev/null && echo yes"):find("yes", 1, true) ~= nil
end

function Server:cli(...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = shell_quote(a) end
  return sh("REDISCLI_AUTH=" .. shell_quote(self.password) .. " redis-cli --no-auth-warning " ..
    "-h 127.0.0.1 -p " .. self.port .. " " .. table.concat(args, " ") .. " 2>&1")
end

-- Starts redis-server on self.port; returns true once it answers PING, false
-- when it exited (the port was taken).
function Server:launch()
  local cmd = table.concat({
    "redis-server", "--bind 127.0.0.1", "--port", self.port, "--save ''", "--appendonly no",
    "--dir", shell_quote(self.dir), "--requirepass", shell_quote(self.password),
    "--logfile", shell_quote(self.dir .. "/redis.log"),
  }, " ")
  self.pid = tonumber(sh(cmd .. " > /dev/null 2>&1 < /dev/null & echo $!"))
  for _ = 1, 100 do
    if self:cli("PING"):find("PONG", 1, true) then return true end
    if not alive(self.pid) then return false end
    os.execute("sleep 0.05")
  end
  error("private redis-server on port " .. self.port .. " did not answer PING: " ..
    util.read_file(self.dir .. "/redis.log"))
end

-- opts.password (required: a canary the specs look for in logs)
function _M.start(opts)
  local self = setmetatable({ password = assert(opts.password) }, Server)
  self.dir = sh("mktemp -d"):gsub("%s+$", "")
  local seed = tonumber(sh("echo $$ $(date +%N)"):match("(%d+)%s*$")) or os.time()
  for attempt = 1, 20 do
    self.port = 30000 + (seed + attempt * 7919) % 30000
    if self:cli("PING"):find("Connection refused", 1, true) and self:launch() then
      self.url = "redis://:" .. self.password .. "@127.0.0.1:" .. self.port .. "/0"
      return self
    end
  end
  error("no free port for a private redis-server")
end

local function wait_dead(pid)
  for _ = 1, 100 do
    if not alive(pid) then return end
    os.execute("sleep 0.05")
  end
end

function Server:kill9()
  if not self.pid then return end
  os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
  wait_dead(self.pid)
  self.pid = nil
end

-- SIGSTOP / SIGCONT: a server that hangs (connections stay open, nothing
-- answers) rather than one that is gone.
function Server:pause() os.execute("kill -STOP " .. self.pid) end
function Server:resume() os.execute("kill -CONT " .. self.pid) end

function Server:restart()
  assert(not self.pid, "still running")
  assert(self:launch(), "port " .. self.port .. " was taken while Redis was down")
end

function Server:stop()
  if self.pid then
    self:resume()
    os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
    wait_dead(self.pid)
    self.pid = nil
  end
  if self.dir then os.execute("rm -rf " .. shell_quote(self.dir)) end
  self.dir = nil
end

return _M
