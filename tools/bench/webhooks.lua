-- wrk script for tools/bench/webhooks: GitHub-style deliveries to the
-- receiver. The body and its X-Hub-Signature-256 are fixed (computed by the
-- driver with the integration's secret); every request carries a distinct
-- X-GitHub-Delivery, so each one is a new delivery: verified, deduplicated
-- (a new key), durably enqueued, then answered.
--
-- Environment: WH_PATH, WH_BODY, WH_SIGNATURE; WH_ID_MODE "uuid" sends random
-- UUIDs as delivery ids (as GitHub does), anything else a counter per thread.
local counter = 0
local thread_id = 0
local threads = {}
local uuid = os.getenv("WH_ID_MODE") == "uuid"

function setup(thread)
  thread:set("tid", #threads + 1)
  threads[#threads + 1] = thread
end

function init(args)
  thread_id = tid or 0
  math.randomseed(os.time() * 1000 + thread_id)
  wrk.method = "POST"
  wrk.path = os.getenv("WH_PATH")
  wrk.body = os.getenv("WH_BODY")
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Hub-Signature-256"] = os.getenv("WH_SIGNATURE")
  wrk.headers["X-GitHub-Event"] = "push"
end

local run = tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000000))

local function random_uuid()
  return string.format("%08x-%04x-4%03x-%04x-%06x%06x", math.random(0, 0xffffffff),
    math.random(0, 0xffff), math.random(0, 0xfff), 0x8000 + math.random(0, 0x3fff),
    math.random(0, 0xffffff), math.random(0, 0xffffff))
end

-- The request is formatted once, around a placeholder for the delivery id;
-- each request is then two concatenations (wrk.format per request cost the
-- client about a quarter of its CPU per request, which the server's rate
-- paid on a machine the two share).
local PLACEHOLDER = "@@delivery@@"
local prefix, suffix

local function split_template()
  wrk.headers["X-GitHub-Delivery"] = PLACEHOLDER
  local req = wrk.format()
  local at = req:find(PLACEHOLDER, 1, true)
  prefix, suffix = req:sub(1, at - 1), req:sub(at + #PLACEHOLDER)
end

function request()
  if not prefix then split_template() end
  counter = counter + 1
  return prefix .. (uuid and random_uuid() or (run .. "-" .. thread_id .. "-" .. counter)) .. suffix
end
