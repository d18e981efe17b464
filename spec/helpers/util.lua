-- Small shell and file helpers shared by the specs that drive the binary.
local peer = require "helpers.peer"

local _M = {}

_M.shell_quote = peer.shell_quote

-- Run a shell command; returns its standard output.
function _M.sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

-- The file's bytes, or "" when it does not exist.
function _M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local text = f:read("*a")
  f:close()
  return text
end

-- Write a file readable by its owner only (mode "600" unless given).
function _M.write_file(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  os.execute("chmod " .. (mode or "600") .. " " .. _M.shell_quote(path))
end

-- The non-empty lines of a text.
function _M.lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

return _M
