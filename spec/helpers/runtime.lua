-- The junction binary driven from a spec: one data directory and config file
-- per instance, the CLI (`junction integrations|jobs|evidence ...`) and
-- `junction run` in the background, its JSON log read back.
--
--   local runtime = require "helpers.runtime"
--   local rt = runtime.new{ conf = { "allow_hosts = 127.0.0.1" }, env = { SIM_TOKEN = "x" } }
--   local code, out, err = rt:cli("integrations", "list")
--   local jobs = rt:json("jobs", "list")          -- decoded --format json lines
--   rt:start(); rt:wait_log(function(l) return l.msg == "junction ready" end, 10)
--   rt:stop()                                      -- SIGTERM, waits for "junction stopped"
--   rt:kill9(); rt:cleanup()
local cjson = require "cjson.safe"
local util = require "helpers.util"

local BIN = os.getenv("JUNCTION_BIN") or "./build/junction"
local shell_quote, sh, read_file = util.shell_quote, util.sh, util.read_file

local _M = {}
local Runtime = {}
Runtime.__index = Runtime

-- opts.conf: extra config lines; opts.env: environment of every command (a
-- variable set to false is unset);
-- opts.connectors: file names copied from connectors/ (default { "github.lua" });
-- opts.data_dir: a data directory of the spec's own (default: one in the
-- instance's directory), e.g. one whose vault the spec filled through the CLI.
function _M.new(opts)
  opts = opts or {}
  local self = setmetatable({}, Runtime)
  self.dir = sh("mktemp -d"):gsub("%s+$", "")
  self.data = opts.data_dir or (self.dir .. "/data")
  self.connectors = self.dir .. "/connectors"
  self.conf = self.dir .. "/junction.conf"
  self.log = self.dir .. "/junction.log"
  self.env = opts.env or {}
  os.execute("mkdir -p " .. shell_quote(self.connectors))
  for _, f in ipairs(opts.connectors or { "github.lua" }) do
    os.execute("cp connectors/" .. f .. " " .. shell_quote(self.connectors .. "/"))
  end
  local lines = { "data_dir = " .. self.data, "connectors_dir = " .. self.connectors }
  local listen = false
  for _, l in ipairs(opts.conf or {}) do
    lines[#lines + 1] = l
    listen = listen or l:match("^%s*listen%s*=") ~= nil
  end
  -- `junction run` serves the API (role api): specs run side by side, so
  -- each instance takes a free port unless the spec names one.
  if not listen then lines[#lines + 1] = "listen = 127.0.0.1:0" end
  util.write_file(self.conf, table.concat(lines, "\n") .. "\n")
  return self
end

-- A connector file written into this instance's connectors directory.
function Runtime:connector(name, source)
  util.write_file(self.connectors .. "/" .. name, source)
end

function Runtime:command(args)
  -- JUNCTION_TEST_REDIS_URL (ctest's Redis fixture) is not a configuration
  -- key: the binary would refuse it as a mistyped one.
  local cmd = { "env", "-u", "JUNCTION_DATA_DIR", "-u", "JUNCTION_INTEGRATIONS_FILE",
                "-u", "JUNCTION_TEST_REDIS_URL", shell_quote("JUNCTION_CONFIG=" .. self.conf) }
  -- (false in opts.env unsets a variable: env takes every -u before the
  -- assignments)
  for k, v in pairs(self.env) do
    if not v then table.insert(cmd, 2, "-u " .. k) end
  end
  for k, v in pairs(self.env) do
    if v then cmd[#cmd + 1] = shell_quote(k .. "=" .. v) end
  end
  cmd[#cmd + 1] = shell_quote(BIN)
  for _, a in ipairs(args) do cmd[#cmd + 1] = shell_quote(a) end
  return table.concat(cmd, " ")
end

-- A sanitizer build reports errors and leaks on stderr: none may appear.
local function no_sanitizer_report(text, what)
  assert(not text:find("Sanitizer", 1, true), what .. ": sanitizer report:\n" .. text)
end

-- Runs `junction ...`; returns the exit code, stdout and stderr.
function Runtime:cli(...)
  local out, err = self.dir .. "/stdout", self.dir .. "/stderr"
  local code = tonumber(sh(self:command({ ... }) .. " > " .. shell_quote(out) .. " 2> " ..
    shell_quote(err) .. " < /dev/null; echo $?"):match("(%d+)%s*$"))
  local stderr = read_file(err)
  no_sanitizer_report(stderr, "junction " .. table.concat({ ... }, " "))
  return code, read_file(out), stderr
end

-- `junction ... --format json`: the decoded lines (raises on a failure).
function Runtime:json(...)
  local args = { ... }
  args[#args + 1] = "--format"
  args[#args + 1] = "json"
  local code, out, err = self:cli((table.unpack or unpack)(args))
  assert(code == 0, "junction " .. table.concat(args, " ") .. ": exit " .. tostring(code) ..
    ": " .. err)
  local rows = {}
  for line in out:gmatch("[^\n]+") do rows[#rows + 1] = assert(cjson.decode(line), line) end
  return rows
end

-- Starts `junction run [args...]` in the background, appending to the log.
function Runtime:start(...)
  assert(not self.pid, "already running")
  self.pid = tonumber(sh(self:command({ "run", ... }) .. " >> " .. shell_quote(self.log) ..
    " 2>&1 < /dev/null & echo $!"))
  return self.pid
end

function Runtime:log_lines()
  local lines = {}
  for line in read_file(self.log):gmatch("[^\n]+") do
    lines[#lines + 1] = cjson.decode(line) or { raw = line }
  end
  return lines
end

-- Polls pred() every 100 ms for up to `seconds`; returns its first true value.
function _M.wait(pred, seconds)
  for _ = 1, seconds * 10 do
    local v = pred()
    if v then return v end
    os.execute("sleep 0.1")
  end
end

function Runtime:wait_log(pred, seconds)
  return _M.wait(function()
    for _, l in ipairs(self:log_lines()) do if pred(l) then return l end end
  end, seconds)
end

-- The port the HTTP API bound (its "api listening" line), waited for up to
-- `seconds`; with `after`, only a line after the first `after` log lines
-- counts (a restart). Fails with the log when the API did not start.
function Runtime:api_port(seconds, after)
  local line = _M.wait(function()
    local lines = self:log_lines()
    for i = (after or 0) + 1, #lines do
      if lines[i].msg == "api listening" then return lines[i] end
    end
  end, seconds)
  assert(line, "the API did not start: " .. read_file(self.log))
  return tonumber(line.port)
end

-- Fails when the log holds any of the given texts (secrets, tokens; nil
-- ones are skipped): "CANARY" is the word every spec secret carries.
function Runtime:log_free_of(...)
  local text = read_file(self.log)
  for i = 1, select("#", ...) do
    local needle = select(i, ...)
    if needle and text:find(needle, 1, true) then
      error("text " .. i .. " of the check (a secret, not shown) is in the log of " .. self.dir, 2)
    end
  end
end

-- The job records (jobs list --format json), optionally of one integration.
function Runtime:jobs(integration)
  if integration then return self:json("jobs", "list", "--limit", "0", "--integration", integration) end
  return self:json("jobs", "list", "--limit", "0")
end

-- Waits for a job record matching pred; returns it.
function Runtime:wait_job(pred, seconds)
  return _M.wait(function()
    for _, j in ipairs(self:jobs()) do if pred(j) then return j end end
  end, seconds)
end

-- One SQL query on the store (read-only), the output as text.
function Runtime:sql(query)
  return sh("sqlite3 -readonly " .. shell_quote(self.data .. "/junction.db") .. " " ..
    shell_quote(query) .. " 2>&1")
end

-- Running and not a zombie (an orphan is reaped by whoever adopted it).
local function alive(pid)
  return sh("ps -o stat= -p " .. pid .. " 2>/dev/null"):match("^%s*[^Z%s]") ~= nil
end

-- SIGTERM and wait for the process to end (it must have stopped cleanly).
function Runtime:stop()
  if not self.pid then return end
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  _M.wait(function() return not alive(self.pid) end, 30)
  self.pid = nil
  no_sanitizer_report(read_file(self.log), "junction run")
end

-- SIGKILL: no clean-up at all, as a crash.
function Runtime:kill9()
  if not self.pid then return end
  os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
  _M.wait(function() return not alive(self.pid) end, 10)
  self.pid = nil
end

function Runtime:cleanup()
  if self.pid then os.execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  self.pid = nil
  os.execute("rm -rf " .. shell_quote(self.dir))
end

-- Every file of the data directory and the log, for secret checks.
function Runtime:all_text()
  local parts = { read_file(self.log) }
  for _, f in ipairs({ "junction.db", "junction.db-wal", "junction.db-shm" }) do
    parts[#parts + 1] = read_file(self.data .. "/" .. f)
  end
  return table.concat(parts, "\n")
end

return _M
