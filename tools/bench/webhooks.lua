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

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = uuid and random_uuid() or
    (run .. "-" .. thread_id .. "-" .. counter)
  return wrk.format()
end
