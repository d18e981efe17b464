-- Token exchanges shared across processes through Redis (the ctest fixture's
-- redis-server, JUNCTION_TEST_REDIS_URL): two runtime processes (`junction
-- script` running testing.run with 50 concurrent jobs each, on one data
-- directory and one Redis) against the simulator's refresh-token grant,
-- which rotates the refresh token on every refresh as Jira does.
--
--  - 100 concurrent requests on a credential without a token yet cause
--    exactly one refresh; the rotated refresh token is in the vault (a third
--    process refreshes with it);
--  - 100 concurrent requests on a token that has expired (the processes
--    obtained it in a first round and hold it; its refresh time passed and
--    the provider no longer accepts it) cause exactly one refresh, and all
--    100 go out with the new token: none with the expired one;
--  - a token the provider refuses is withdrawn from Redis and refreshed once
--    more for both processes;
--  - a process that read the credential before another one rotated its
--    refresh token refreshes with the rotated one (read from the vault);
--  - with Redis unreachable each process exchanges on its own, and says so
--    once;
--  - Redis holds no usable token: every key's value is scanned for the
--    access and refresh tokens and the client secret.
-- ctest sets JUNCTION_BIN.
local cjson = require "cjson"
local simulator = require "helpers.simulator"
local tokens = require "helpers.tokens"
local util = require "helpers.util"

local BIN = os.getenv("JUNCTION_BIN") or "./build/junction"
local REDIS_URL = os.getenv("JUNCTION_TEST_REDIS_URL")
local CLIENT_ID = "junction-shared-client"
local CLIENT_SECRET = "CANARYSHARESECRET-0123456789abcdef"
local REFRESH_TOKEN = "CANARYSHAREREFRESH-initial-0123456789"
local JOBS = 50

local shell_quote, sh, read_file, write_file, lines =
  util.shell_quote, util.sh, util.read_file, util.write_file, util.lines

-- No client secret, refresh token or access token in any of the texts.
local no_secrets = tokens.no_secrets{
  { "CANARYSHARE", "the client secret or refresh token leaked" },
  { "sim_rt_", "a rotated refresh token leaked" }, { "sim_at_", "an access token leaked" },
  { "sim_cc_", "an access token leaked" },
}

-- The end of the drivers below: testing.run with n concurrent jobs of source
-- src, each with the vault credential cred, the token shared through Redis at
-- redis_url; prints a JSON summary line (the jobs that succeeded, the errors
-- of the others), then the raw log.
local RUN_JOBS = [[
local jobs = {}
for i = 1, tonumber(n) do
  jobs[i] = { source = src, allow_hosts = { "127.0.0.1" }, credential_id = cred,
              organization_id = "acme" }
end
local results, _, raw = T.run(jobs, { redis_url = redis_url, data_dir = data_dir })
local summary = { succeeded = 0, errors = {} }
for _, r in ipairs(results) do
  if r.status == "succeeded" then summary.succeeded = summary.succeeded + 1
  else summary.errors[#summary.errors + 1] = tostring(r.error) end
end
io.write(cjson.encode(summary), "\n", raw)
]]

-- One process: testing.run with n concurrent jobs that each GET /user with
-- the vault credential (once more after a 401), after a common start time.
-- Prints a JSON summary line, then the raw log.
local DRIVER = [[
local T = require "junction.testing"
local cjson = require "cjson"
local url, cred, redis_url, data_dir, n, start_at = ...
while T.now_ms() < tonumber(start_at) do os.execute("sleep 0.01") end
local src = ([=[ local ctx = ...
  local res = assert(ctx.http.get("URL"))
  if res.status == 401 then res = assert(ctx.http.get("URL")) end
  assert(res.status == 200, "HTTP " .. res.status)
  return res:json().login ]=]):gsub("URL", url)
]] .. RUN_JOBS

-- One process, one job that holds the credential as read at its start, then
-- waits until GET <flag> answers 418 (the spec arms that fault when it is
-- time) before it calls <url> with the credential.
local LATE_DRIVER = [[
local T = require "junction.testing"
local cjson = require "cjson"
local url, flag, cred, redis_url, data_dir = ...
local src = ([=[ local ctx = ...
  repeat
    local f = assert(ctx.http.get("FLAG", { auth = false }))
    if f.status ~= 418 then ctx.sleep(0.05) end
  until f.status == 418
  local res = assert(ctx.http.get("URL"))
  assert(res.status == 200, "HTTP " .. res.status)
  return res:json().login ]=]):gsub("URL", url):gsub("FLAG", flag)
local r, _, raw = T.run({ source = src, allow_hosts = { "127.0.0.1" }, credential_id = cred,
                          organization_id = "acme" }, { redis_url = redis_url, data_dir = data_dir })
io.write(cjson.encode({ succeeded = r.ok and 1 or 0, errors = { r.error } }), "\n", raw)
]]

-- One process, n concurrent jobs that each GET <url> with the credential
-- (round 1), wait until GET <flag> answers 418 (the spec arms that fault once
-- the token has expired), then GET <url> again (round 2), without a retry.
-- Prints a JSON summary line (jobs whose both rounds answered 200), then the
-- raw log.
local ROUNDS_DRIVER = [[
local T = require "junction.testing"
local cjson = require "cjson"
local url, flag, cred, redis_url, data_dir, n, start_at = ...
while T.now_ms() < tonumber(start_at) do os.execute("sleep 0.01") end
local src = ([=[ local ctx = ...
  local first = assert(ctx.http.get("URL"))
  assert(first.status == 200, "round 1: HTTP " .. first.status)
  repeat
    local f = assert(ctx.http.get("FLAG", { auth = false }))
    if f.status ~= 418 then ctx.sleep(0.1) end
  until f.status == 418
  local second = assert(ctx.http.get("URL"))
  assert(second.status == 200, "round 2: HTTP " .. second.status)
  return second:json().login ]=]):gsub("URL", url):gsub("FLAG", flag)
]] .. RUN_JOBS

describe("token exchanges shared through Redis", function()
  local sim, vault, dir, data, driver

  local function stats() return sim:stats().exchanges end

  -- The command (ending in "&": it runs in the background) of one process
  -- `junction script <script> <args...>` on the vault, its stdout and stderr
  -- into the files out and err.
  local function script_command(script, args, out, err)
    local cmd = { util.vault_env(vault.keyfile, data) .. shell_quote(BIN), "script",
                  shell_quote(script) }
    for _, a in ipairs(args) do cmd[#cmd + 1] = shell_quote(a) end
    return table.concat(cmd, " ") .. " > " .. shell_quote(out) .. " 2> " .. shell_quote(err) ..
      " < /dev/null &"
  end

  -- A finished driver's output: its JSON summary line (raises, with what
  -- the process printed, when there is none), the raw log after it, stderr.
  local function driver_output(i, out, err)
    local text = read_file(out)
    local first = text:match("^([^\n]*)\n") or ""
    local ok, summary = pcall(cjson.decode, first)
    assert(ok and type(summary) == "table",
      "process " .. i .. " did not finish: " .. text .. read_file(err))
    return { summary = summary, log = text:sub(#first + 2), stderr = read_file(err) }
  end

  -- The time the processes of one round start at (epoch ms), 2 s from now.
  local function start_time()
    return string.format("%d", sh("date +%s%3N"):match("%d+") + 2000)
  end

  -- Runs `count` driver processes at once (JOBS jobs each); returns their
  -- summaries, raw logs and stderr texts.
  local function run_processes(count, cred, redis_url)
    local start_at = start_time()
    local cmds = {}
    for i = 1, count do
      cmds[i] = script_command(driver, { sim:url("/user"), cred, redis_url, data,
        tostring(JOBS), start_at }, dir .. "/out" .. i, dir .. "/err" .. i)
    end
    os.execute(table.concat(cmds, " ") .. " wait")
    local out = {}
    for i = 1, count do out[i] = driver_output(i, dir .. "/out" .. i, dir .. "/err" .. i) end
    return out
  end

  local function put(auth_type, doc)
    return (vault:put("github", auth_type, doc, no_secrets))
  end

  local function oauth2_credential()
    return put("oauth2", { client_id = CLIENT_ID, client_secret = CLIENT_SECRET,
                           token_url = sim:url("/oauth/token"), refresh_token = REFRESH_TOKEN })
  end

  local function versions(id) return vault:versions(id, no_secrets) end

  local function redis_cli(...)
    local cmd = { "redis-cli", "-u", shell_quote(REDIS_URL) }
    for _, a in ipairs({ ... }) do cmd[#cmd + 1] = shell_quote(a) end
    return sh(table.concat(cmd, " ") .. " 2>&1")
  end

  -- Every key's value (strings and hashes), as redis-cli prints them, and the
  -- keys of credential id's shared token.
  local function redis_dump(id)
    local parts, shared = {}, {}
    for _, key in ipairs(lines(redis_cli("--scan"))) do
      local kind = redis_cli("TYPE", key):gsub("%s+$", "")
      parts[#parts + 1] = key
      if kind == "string" then
        parts[#parts + 1] = redis_cli("GET", key)
      elseif kind == "hash" then
        parts[#parts + 1] = redis_cli("HGETALL", key)
      end
      if id and key:find("jn:token:{acme/" .. id .. "}", 1, true) == 1 then
        shared[#shared + 1] = key
      end
    end
    return table.concat(parts, "\n"), shared
  end

  local function assert_all_succeeded(procs)
    for i, p in ipairs(procs) do
      assert.are.same({}, p.summary.errors, "process " .. i)
      assert.are.equal(JOBS, p.summary.succeeded, "process " .. i)
      no_secrets(p.log, p.stderr)
    end
  end

  setup(function()
    assert(REDIS_URL, "JUNCTION_TEST_REDIS_URL is not set (run through ctest)")
    vault = tokens.vault()
    dir, data = vault.dir, vault.data
    driver = dir .. "/driver.lua"
    write_file(driver, DRIVER)
    sim = simulator.start{ members = 5, repos = 5, tokens = { "sim-token" },
      client_id = CLIENT_ID, client_secret = CLIENT_SECRET, refresh_token = REFRESH_TOKEN }
  end)

  teardown(function() tokens.stop(sim, vault) end)

  -- The simulator's refresh token is the initial one again; each test uses a
  -- credential of its own (and so a Redis cell of its own).
  before_each(function() sim:reset() end)

  it("100 concurrent requests on a credential with no token yet cause exactly one refresh, " ..
     "also across two runtime processes sharing Redis", function()
    local id = oauth2_credential()
    local procs = run_processes(2, id, REDIS_URL)
    assert_all_succeeded(procs)
    assert.are.equal(1, stats().refresh_token)
    assert.are.equal(0, stats().refresh_token_refused)

    -- The leader stored the rotated refresh token as version 2 ...
    local v = versions(id)
    assert.are.equal("current", v[2])
    assert.are.equal("previous", v[1])
    -- ... and it is the one that works now: the first one was rotated away,
    -- so a third process (on its own, no Redis) refreshes only with it.
    local code, out, err = vault:collect("connectors/github.lua",
      { organization = "acme", base_url = sim:url() }, id)
    assert.are.equal(0, code, err)
    assert.is_true(#lines(out) > 0)
    assert.are.equal(2, stats().refresh_token)
    assert.are.equal(0, stats().refresh_token_refused)
    no_secrets(out, err)

    -- Redis holds the shared token, sealed: no usable token in any value.
    local dump, shared = redis_dump(id)
    assert.are.equal(1, #shared, "one shared token for the credential: " .. dump)
    no_secrets(dump)
    no_secrets(vault:stored())
  end)

  it("100 concurrent requests on an expired token cause exactly one refresh, also across two " ..
     "runtime processes sharing Redis", function()
    local id = oauth2_credential()
    local rounds = dir .. "/rounds.lua"
    write_file(rounds, ROUNDS_DRIVER)
    -- Round 1 obtains a token of 62 s: with the 60 s refresh margin the
    -- runtime renews it 2 s later, and shares it in Redis until then.
    sim:token_ttl(62)
    local start_at = start_time()
    local cmds = {}
    for i = 1, 2 do
      cmds[i] = script_command(rounds, { sim:url("/user"), sim:url("/flag"), id, REDIS_URL, data,
        tostring(JOBS), start_at }, dir .. "/rounds" .. i, dir .. "/rounds_err" .. i)
    end
    os.execute(table.concat(cmds, " "))
    local function finished(i) return read_file(dir .. "/rounds" .. i):find("\n", 1, true) end
    local function user_requests() return (sim:stats().by_path or {})["/user"] or 0 end
    -- Every job has had its round-1 answer and now waits for the flag.
    for _ = 1, 1200 do
      if user_requests() >= 2 * JOBS and ((sim:stats().by_path or {})["/flag"] or 0) >= 2 * JOBS
      then break end
      assert(not finished(1) and not finished(2), "a process ended in round 1: " ..
        read_file(dir .. "/rounds1") .. read_file(dir .. "/rounds2") ..
        read_file(dir .. "/rounds_err1") .. read_file(dir .. "/rounds_err2"))
      os.execute("sleep 0.05")
    end
    assert.are.equal(2 * JOBS, user_requests())
    local first_round = stats().refresh_token
    assert.is_true(first_round >= 1)
    -- The token expires: Redis drops the shared copy at its refresh time
    -- (both processes still hold it, past that time) ...
    local function shared_token()
      local _, keys = redis_dump(id)
      for _, k in ipairs(keys) do
        if not k:find(":lock$") and not k:find(":fail$") then return k end
      end
    end
    for _ = 1, 1200 do
      if not shared_token() then break end
      os.execute("sleep 0.05")
    end
    assert.is_nil(shared_token(), "the shared token did not expire")
    -- ... and the provider no longer accepts it either (a request with it
    -- would answer 401 and count as an expired use). The next token lives
    -- an hour.
    assert.is_true(sim:expire_exchanged().expired >= 1)
    sim:token_ttl(3600)
    local before = #sim:tokens()
    assert.are.equal(first_round, before)

    -- Round 2: 100 concurrent requests, 50 in each process.
    sim:fault{ path_prefix = "/flag", mode = "server_error", status = 418, count = -1 }
    for _ = 1, 1200 do
      if finished(1) and finished(2) then break end
      os.execute("sleep 0.05")
    end
    for i = 1, 2 do
      local p = driver_output(i, dir .. "/rounds" .. i, dir .. "/rounds_err" .. i)
      assert.are.same({}, p.summary.errors, "process " .. i)
      assert.are.equal(JOBS, p.summary.succeeded, "process " .. i)
      no_secrets(read_file(dir .. "/rounds" .. i), p.stderr)
    end
    -- Exactly one refresh for the 100 requests ...
    assert.are.equal(first_round + 1, stats().refresh_token)
    assert.are.equal(0, stats().refresh_token_refused)
    assert.are.equal(4 * JOBS, user_requests())
    -- ... and every request of round 2 carried the new token: none the
    -- expired one.
    local tokens = sim:tokens()
    assert.are.equal(before + 1, #tokens)
    local used = 0
    for i = 1, before do
      assert.are.equal(0, tokens[i].expired_uses, "a request went out with the expired token")
      assert.is_false(tokens[i].live)
      used = used + tokens[i].uses
    end
    assert.are.equal(2 * JOBS, used)
    assert.are.same({ n = before + 1, grant = "refresh_token", expires_in = 3600,
                      uses = 2 * JOBS, expired_uses = 0, live = true }, tokens[before + 1])
    -- The refresh rotated the refresh token into a new current version.
    assert.are.equal("current", versions(id)[first_round + 2])
    no_secrets((redis_dump()))
  end)

  it("withdraws a token the provider refuses and refreshes once more for both processes",
     function()
    local id = oauth2_credential()
    assert_all_succeeded(run_processes(2, id, REDIS_URL))
    assert.are.equal(1, stats().refresh_token)
    -- New processes take the token from Redis instead of refreshing ...
    assert_all_succeeded(run_processes(2, id, REDIS_URL))
    assert.are.equal(1, stats().refresh_token)
    -- ... until the provider refuses it: then one of them refreshes (with
    -- the refresh token the first refresh stored), the other takes that.
    sim:request("POST", "/_sim/revoke_exchanged")
    local procs = run_processes(2, id, REDIS_URL)
    assert_all_succeeded(procs)
    assert.are.equal(2, stats().refresh_token)
    assert.are.equal(0, stats().refresh_token_refused)
    assert.are.equal("current", versions(id)[3])
    no_secrets((redis_dump()))
  end)

  it("refreshes with the refresh token another process rotated while this one ran", function()
    local id = oauth2_credential()
    local late = dir .. "/late.lua"
    write_file(late, LATE_DRIVER)
    -- A: reads version 1 of the credential, then waits for the flag.
    os.execute(script_command(late, { sim:url("/user"), sim:url("/flag"), id, REDIS_URL, data },
      dir .. "/late", dir .. "/late_err"))
    local waited = 0
    while (sim:stats().by_path or {})["/flag"] == nil do
      assert(waited < 600, "the late process did not start: " .. read_file(dir .. "/late") ..
        read_file(dir .. "/late_err"))
      os.execute("sleep 0.05")
      waited = waited + 1
    end
    -- B: refreshes (rotating the refresh token: version 2) and shares the
    -- token; then the shared token goes, as when it expires.
    assert_all_succeeded(run_processes(1, id, REDIS_URL))
    assert.are.equal(1, stats().refresh_token)
    assert.are.equal("current", versions(id)[2])
    local _, shared = redis_dump(id)
    assert.are.equal(1, #shared)
    redis_cli("DEL", shared[1])
    -- A refreshes now: with version 2's refresh token, read from the vault
    -- (version 1's was rotated away and would be refused).
    sim:fault{ path_prefix = "/flag", mode = "server_error", status = 418, count = -1 }
    for _ = 1, 1200 do
      if read_file(dir .. "/late"):find("\n", 1, true) then break end
      os.execute("sleep 0.05")
    end
    local p = driver_output(1, dir .. "/late", dir .. "/late_err")
    assert.are.same({}, p.summary.errors)
    assert.are.equal(1, p.summary.succeeded)
    assert.are.equal(2, stats().refresh_token)
    assert.are.equal(0, stats().refresh_token_refused)
    assert.are.equal("current", versions(id)[3])
    no_secrets(read_file(dir .. "/late"), p.stderr)
  end)

  it("falls back to exchanging in each process when Redis is unreachable, logged once",
     function()
    -- Nothing listens on port 1: every Redis command fails at once.
    local id = put("client_credentials", { client_id = CLIENT_ID, client_secret = CLIENT_SECRET,
                                           token_url = sim:url("/oauth/token") })
    local procs = run_processes(2, id, "redis://127.0.0.1:1/0")
    assert_all_succeeded(procs)
    -- One exchange per process: single flight within each, none between.
    assert.are.equal(2, stats().client_credentials)
    for _, p in ipairs(procs) do
      local _, n = p.log:gsub("each process exchanges its tokens on its own", "")
      assert.are.equal(1, n, p.log)
    end
  end)
end)
