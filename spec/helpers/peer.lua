-- Start a Node.js test peer as a child process for the duration of a spec
-- file. The child exits when our end of its stdin closes, so a crashed spec
-- run never leaves it behind.
local _M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- script: path relative to the repository root; args: list of strings.
function _M.start(script, args)
  local argv = { "node", shell_quote(script) }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = shell_quote(a) end
  local portfile = os.tmpname()
  -- A fifo keeps the child's stdin open exactly as long as we hold it.
  local fifo = os.tmpname()
  os.remove(fifo)
  assert(os.execute("mkfifo " .. shell_quote(fifo)) == 0, "mkfifo failed")
  local cmd = table.concat(argv, " ") .. " < " .. shell_quote(fifo) .. " > " ..
      shell_quote(portfile) .. " 2>/dev/null & echo $!"
  local p = io.popen(cmd)
  local pid = tonumber(p:read("*l"))
  p:close()
  local keep = io.open(fifo, "w") -- blocks until the child opens the fifo
  local port
  for _ = 1, 200 do
    local f = io.open(portfile)
    local line = f and f:read("*l")
    if f then f:close() end
    port = line and tonumber(line:match("^LISTENING (%d+)"))
    if port then break end
    os.execute("sleep 0.05")
  end
  os.remove(portfile)
  os.remove(fifo)
  assert(port, "peer " .. script .. " did not start")
  local self = { pid = pid, port = port, keep = keep }
  function self:url(path) return "http://127.0.0.1:" .. self.port .. (path or "") end
  function self:stop()
    if self.keep then self.keep:close(); self.keep = nil end
    os.execute("kill " .. self.pid .. " 2>/dev/null")
  end
  return self
end

-- GET/POST with curl; returns status, body.
function _M.curl(method, url, body)
  local cmd = "curl -s -o - -w '\\n%{http_code}' -X " .. method .. " " .. shell_quote(url)
  if body then cmd = cmd .. " -H 'content-type: application/json' --data " .. shell_quote(body) end
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  local text, code = out:match("^(.*)\n(%d+)$")
  return tonumber(code), text
end

return _M
