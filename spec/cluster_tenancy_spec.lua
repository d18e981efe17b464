-- Cluster mode: what the nodes share besides the queue, end to end with
-- `junction` processes that each have their own data directory, on the real
-- redis-server of the ctest fixture (JUNCTION_TEST_REDIS_URL, database 10,
-- emptied before each group) and a private one stopped with SIGSTOP:
--   - an integration added through node A's CLI is scheduled and run by node
--     B, with a credential put on node A (the simulator checks the token); an
--     API token made on A is accepted by B's API; an integration removed on A
--     is gone for B;
--   - change detection in the cluster gives the numbers of the embedded store
--     for the same runs (spec/jobs_spec.lua "records what each run added,
--     changed and removed");
--   - the canary secret is in no Redis value (every key read) and no log;
--   - a Redis that hangs: /healthz keeps answering, /readyz says Redis is
--     down, and after SIGCONT the jobs accepted before finish.
-- ctest sets JUNCTION_BIN.
local cjson = require "cjson.safe"
local simulator = require "helpers.simulator"
local runtime = require "helpers.runtime"
local cluster = require "helpers.cluster"
local util = require "helpers.util"

local sh, shell_quote = util.sh, util.shell_quote

local DB = 10
local CANARY = "ghp_CANARYTENANCY0123456789abcdefghijklmn" -- a token the simulator accepts

local function no_canary(what, text)
  assert.is_nil(text:find("CANARYTENANCY", 1, true), "the canary token leaked into " .. what)
end

local test_connector = util.test_connector

-- The connector of jobs_spec's change detection: run 1 emits a, b, c; every
-- later run a (unchanged), b (changed) and d.
local CHANGING = test_connector("changing", [[
  local cp = ctx.checkpoint.get() or { run = 0 }
  local run = cp.run + 1
  local function emit(id, v) ctx.emit{ resource_type = "test.item", resource_id = id, data = { v = v } } end
  if run == 1 then emit("a", 1); emit("b", 1); emit("c", 1)
  else emit("a", 1); emit("b", 2); emit("d", 1) end
  ctx.checkpoint.set{ run = run }
]])

-- Emits, waits a few seconds (yielding), emits again: a run that is in the
-- middle of its collection when Redis stops.
local SLOW = test_connector("slow", [[
  ctx.emit{ resource_type = "test.item", resource_id = "before", data = {} }
  for _ = 1, 3 do ctx.sleep(1) end
  ctx.emit{ resource_type = "test.item", resource_id = "after", data = {} }
]])

local function curl(port, path, token, body)
  local out = os.tmpname()
  local args = { "curl", "-s", "--max-time", "20", "-o", out, "-w", "%{http_code}" }
  if token then args[#args + 1] = "-H"; args[#args + 1] = "Authorization: Bearer " .. token end
  if body then
    args[#args + 1] = "-H"; args[#args + 1] = "Content-Type: application/json"
    args[#args + 1] = "--data-binary"; args[#args + 1] = body
  end
  args[#args + 1] = "http://127.0.0.1:" .. port .. path
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = shell_quote(a) end
  local status = tonumber(sh(table.concat(quoted, " ")))
  local body = util.read_file(out)
  os.remove(out)
  no_canary("a response", body)
  return status, body
end

local function ready(node)
  assert.is_table(node:wait_log(function(l) return l.msg == "junction ready" end, 20),
    util.read_file(node.log))
end

describe("integrations, credentials and tokens shared across nodes", function()
  local redis = cluster.redis(DB)
  local sim, a, b, keyfile
  local dir = sh("mktemp -d"):gsub("%s+$", "")

  setup(function()
    redis:flush()
    sim = simulator.start{ members = 5, repos = 3, tokens = { CANARY } }
    keyfile = dir .. "/master.key"
    util.write_file(keyfile, "k1 " .. sh("head -c 32 /dev/urandom | base64"):gsub("%s+$", "") .. "\n")
    os.execute("chmod 600 " .. shell_quote(keyfile))
    -- every node of a cluster has the same master key (a secret mount)
    local opts = { connectors = { "github.lua" }, conf = { "allow_hosts = 127.0.0.1" },
                   env = { JUNCTION_MASTER_KEY_FILE = keyfile } }
    a, b = cluster.node(redis, opts), cluster.node(redis, opts)
    for _, n in ipairs({ a, b }) do n:connector("changing.lua", CHANGING) end
  end)

  teardown(function()
    for _, n in ipairs({ a, b }) do n:stop(); n:cleanup() end
    sim:stop()
    os.execute("rm -rf " .. shell_quote(dir))
  end)

  it("runs on node B an integration and a credential added on node A", function()
    b:start()
    ready(b)
    local port = b:api_port(20)
    -- the credential and the integration, through node A's CLI only
    local doc = dir .. "/gh.json"
    util.write_file(doc, cjson.encode({ token = CANARY }))
    os.execute("chmod 600 " .. shell_quote(doc))
    local code, out, err = a:cli("creds", "put", "--org", "acme", "--provider", "github",
      "--auth-type", "api_key", "--from-file", doc)
    assert.are.equal(0, code, err)
    no_canary("creds put", out .. err)
    local cred = cjson.decode(util.lines(out)[1]).id
    assert.is_string(cred)
    code, _, err = a:cli("integrations", "add", "gh-a", "--org", "acme", "--provider", "github",
      "--credential", cred, "--schedule", "366d",
      "--config", cjson.encode({ organization = "acme", base_url = sim:url() }))
    assert.are.equal(0, code, err)
    -- node B's scheduler picks it up (a new integration's first slot is a
    -- catch-up run) and its worker runs it with the credential from Redis
    local job = runtime.wait(function()
      for _, j in ipairs(b:jobs("gh-a")) do
        if j.status ~= "queued" and j.status ~= "running" then return j end
      end
    end, 60)
    assert.is_table(job, util.read_file(b.log))
    assert.are.equal("succeeded", job.status, tostring(job.error))
    assert.is_true(job.items > 0)
    -- the simulator saw the token: it answers only the tokens it was given
    assert.is_true(sim:stats().total > 0)
    -- an API token made on A opens B's API, which lists A's integration
    code, out, err = a:cli("tokens", "create", "--org", "acme", "--scope", "read")
    assert.are.equal(0, code, err)
    local token = out:match("(jnt_[%w_]+)")
    assert.is_string(token, out)
    local s, body = curl(port, "/v1/integrations", token)
    assert.are.equal(200, s, body)
    assert.matches('"gh-a"', body, 1, true)
    -- and one added through B's API is A's too
    code, out, err = a:cli("tokens", "create", "--org", "acme", "--scope", "write")
    assert.are.equal(0, code, err)
    s, body = curl(port, "/v1/integrations", out:match("(jnt_[%w_]+)"),
      cjson.encode({ provider = "changing", schedule = "366d", config = {} }))
    assert.are.equal(201, s, body)
    local via_api = cjson.decode(body).id
    code, out, err = a:cli("integrations", "show", via_api, "--format", "json")
    assert.are.equal(0, code, err)
    assert.matches('"acme"', out, 1, true)
    -- the audit chain written by both nodes verifies from either
    code, out, err = b:cli("audit", "verify")
    assert.are.equal(0, code, out .. err)

    -- removed on A: gone for B (its scheduler drops the entry when it next
    -- fires and finds nothing, as in the embedded store)
    code, _, err = a:cli("integrations", "rm", "gh-a")
    assert.are.equal(0, code, err)
    code, _, err = b:cli("integrations", "show", "gh-a")
    assert.are_not.equal(0, code)
    assert.matches("no integration 'gh-a'", err, 1, true)
    local _, list = b:cli("integrations", "list", "--format", "json")
    assert.is_nil(list:find("gh-a", 1, true), list)

    -- change detection in the cluster: jobs_spec's numbers
    code, _, err = a:cli("integrations", "add", "chg-1", "--org", "org-c", "--provider",
      "changing", "--schedule", "366d", "--config", "{}")
    assert.are.equal(0, code, err)
    local first = runtime.wait(function()
      for _, j in ipairs(a:jobs("chg-1")) do if j.status == "succeeded" then return j end end
    end, 60)
    assert.is_table(first, util.read_file(b.log))
    assert.are.same({ added = 3, changed = 0, removed = 0, baseline_job_id = cjson.null },
      first.changes)
    code, out, err = a:cli("integrations", "sync", "chg-1")
    assert.are.equal(0, code, err)
    local id = out:match("queued job (%x+)")
    local second = runtime.wait(function()
      local j = a:json("jobs", "show", id)[1]
      return j and j.status == "succeeded" and j
    end, 60)
    assert.is_table(second, util.read_file(b.log))
    assert.are.same({ added = 1, changed = 1, removed = 1, baseline_job_id = first.id },
      second.changes)
    local shown = a:json("jobs", "show", id)[1]
    assert.are.equal("d", shown.changed_resources.added[1].resource_id)
    assert.are.equal("b", shown.changed_resources.changed[1].resource_id)
    assert.are.equal("c", shown.changed_resources.removed[1].resource_id)
    assert.are.equal("test.item", shown.changed_resources.removed[1].resource_type)

    -- no secret in Redis (every key, every type read), the logs, the outputs
    b:stop()
    local dump = redis:dump()
    assert.matches("jn:cred:", dump, 1, true) -- the credential is there, as ciphertext
    no_canary("Redis", dump)
    no_canary("node A's files", a:all_text())
    no_canary("node B's files", b:all_text())
    no_canary("jobs show", select(2, a:cli("jobs", "show", job.id)))
  end)
end)

describe("a Redis that hangs (SIGSTOP)", function()
  local dir = sh("mktemp -d"):gsub("%s+$", "")
  local redis, node

  setup(function()
    redis = cluster.private_redis(dir)
    node = cluster.node(redis, { conf = { "queue_visibility_timeout_s = 3",
                                          "queue_max_attempts = 5", "queue_retry_base_s = 1" } })
    node:connector("slow.lua", SLOW)
  end)

  teardown(function()
    local pid = util.read_file(dir .. "/redis.pid"):match("%d+")
    if pid then os.execute("kill -CONT " .. pid .. " 2>/dev/null") end
    node:stop()
    node:cleanup()
    redis:stop()
    os.execute("rm -rf " .. shell_quote(dir))
  end)

  it("keeps the node answering and finishes the accepted jobs after SIGCONT", function()
    node:start()
    ready(node)
    local port = node:api_port(20)
    local jobs = {}
    for _, name in ipairs({ "slow-1", "slow-2" }) do
      local code, _, err = node:cli("integrations", "add", name, "--org", "org-" .. name,
        "--provider", "slow", "--schedule", "366d", "--config", "{}")
      assert.are.equal(0, code, err)
      local out
      code, out, err = node:cli("integrations", "sync", name)
      assert.are.equal(0, code, err)
      jobs[#jobs + 1] = out:match("queued job (%x+)")
    end
    assert.is_table(runtime.wait(function()
      local j = node:json("jobs", "show", jobs[1])[1]
      return j and j.status == "running" and j
    end, 30), util.read_file(node.log))

    local pid = assert(util.read_file(dir .. "/redis.pid"):match("%d+"))
    os.execute("kill -STOP " .. pid)
    -- the process answers while Redis hangs, and says Redis is down
    local not_ready
    for _ = 1, 10 do
      local s, body = curl(port, "/healthz")
      assert.are.equal(200, s, body)
      s, body = curl(port, "/readyz")
      if s == 503 then not_ready = body end
      os.execute("sleep 0.3")
    end
    assert.is_string(not_ready, "readyz never reported Redis down")
    assert.matches("not_ready", not_ready, 1, true)
    assert.matches("redis unix:", not_ready, 1, true)
    os.execute("kill -CONT " .. pid)

    -- the accepted jobs run to the end (again, if the hang cost an attempt)
    for _, id in ipairs(jobs) do
      local done = runtime.wait(function()
        local j = node:json("jobs", "show", id)[1]
        return j and j.status == "succeeded" and j
      end, 90)
      assert.is_table(done, util.read_file(node.log))
      assert.are.equal(2, done.items)
      -- each item once in evidence.raw, whatever was retried
      local code, out = node:cli("evidence", "export", "--job", id)
      assert.are.equal(0, code)
      local seen = {}
      for _, line in ipairs(util.lines(out)) do
        local item = assert(cjson.decode(line))
        assert.is_nil(seen[item.id], "item twice: " .. item.id)
        seen[item.id] = true
      end
    end
    -- ready again
    assert.is_truthy(runtime.wait(function() return curl(port, "/readyz") == 200 end, 30))
  end)
end)
