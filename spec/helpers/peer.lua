-- Node.js test peers (the provider simulator, the paging peer) as child
-- processes of a spec file.
--
-- The child's stdin is a pipe we hold (io.popen in "w" mode); the peers exit
-- when it closes, so a spec run that dies never leaves one behind. A shell
-- wrapper prints the child's pid before becoming it, and the peer prints
-- `LISTENING <port>` once it accepts connections.
local _M = {}

local START_TIMEOUT_S = 15

function _M.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local text = f:read("*a")
  f:close()
  return text
end

-- argv: the command as a list ({ "node", "script.js", ... }).
-- Returns { pid, port, stdin } or raises with the child's stderr.
function _M.spawn(argv)
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = _M.shell_quote(a) end
  local out, err = os.tmpname(), os.tmpname()
  local cmd = "exec sh -c 'echo $$; exec \"$@\"' sh " .. table.concat(quoted, " ") ..
      " > " .. _M.shell_quote(out) .. " 2> " .. _M.shell_quote(err)
  local stdin = assert(io.popen(cmd, "w"))
  local pid, port
  local deadline = os.time() + START_TIMEOUT_S
  repeat
    local text = read_file(out)
    pid = tonumber(text:match("^(%d+)\n"))
    port = tonumber(text:match("\nLISTENING (%d+)\n"))
    if port then break end
    os.execute("sleep 0.05")
  until os.time() > deadline
  local stderr_text = read_file(err)
  os.remove(out)
  os.remove(err)
  if not port then
    stdin:close()
    error(argv[2] .. " did not start within " .. START_TIMEOUT_S .. " s: " .. stderr_text, 2)
  end
  return { pid = pid, port = port, stdin = stdin }
end

-- Stop a child started by spawn: signal it, then close its stdin (which
-- waits for it to exit).
function _M.stop(child)
  if not child.stdin then return end
  os.execute("kill " .. child.pid .. " 2>/dev/null")
  child.stdin:close()
  child.stdin = nil
end

-- A peer script with url() and stop().
function _M.start(script, args)
  local argv = { "node", script }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local self = _M.spawn(argv)
  function self:url(path) return "http://127.0.0.1:" .. self.port .. (path or "") end
  function self:stop() _M.stop(self) end
  return self
end

return _M
