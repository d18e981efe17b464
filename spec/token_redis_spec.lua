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
local function no_secrets(...)
  for _, text in ipairs({ ... }) do
    assert.is_nil(text:find("CANARYSHARE", 1, true), "the client secret or refresh token leaked")
    assert.is_nil(text:find("sim_rt_", 1, true), "a rotated refresh token leaked")
    assert.is_nil(text:find("sim_at_", 1, true), "an access token leaked")
    assert.is_nil(text:find("sim_cc_", 1, true), "an access token leaked")
  end
end

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

describe("token exchanges shared through Redis", function()
  local sim, dir, data, keyfile, driver

  local function stats() return sim:stats().exchanges end

  -- The binary's environment: the vault's key file and data directory, and
  -- nothing else of JUNCTION_* (the config refuses unknown variables, and
  -- the fixture's JUNCTION_TEST_REDIS_URL is not one).
  local function env()
    return "env -u JUNCTION_MASTER_KEY -u JUNCTION_CONFIG -u JUNCTION_TEST_REDIS_URL " ..
      shell_quote("JUNCTION_MASTER_KEY_FILE=" .. keyfile) .. " " ..
      shell_quote("JUNCTION_DATA_DIR=" .. data) .. " "
  end

  -- Runs `junction ...`; returns the exit code, stdout and stderr.
  local function junction(...)
    local cmd = { env() .. shell_quote(BIN) }
    for _, a in ipairs({ ... }) do cmd[#cmd + 1] = shell_quote(a) end
    local out, err = dir .. "/stdout", dir .. "/stderr"
    local code = tonumber(sh(table.concat(cmd, " ") .. " > " .. shell_quote(out) .. " 2> " ..
      shell_quote(err) .. " < /dev/null; echo $?"):match("(%d+)%s*$"))
    return code, read_file(out), read_file(err)
  end

  -- Runs `count` driver processes at once (JOBS jobs each); returns their
  -- summaries, raw logs and stderr texts.
  local function run_processes(count, cred, redis_url)
    local start_at = string.format("%d", sh("date +%s%3N"):match("%d+") + 2000)
    local cmds = {}
    for i = 1, count do
      cmds[i] = env() .. table.concat({ shell_quote(BIN), "script", shell_quote(driver),
        shell_quote(sim:url("/user")), shell_quote(cred), shell_quote(redis_url),
        shell_quote(data), tostring(JOBS), start_at }, " ") ..
        " > " .. shell_quote(dir .. "/out" .. i) .. " 2> " .. shell_quote(dir .. "/err" .. i) ..
        " < /dev/null &"
    end
    os.execute(table.concat(cmds, " ") .. " wait")
    local out = {}
    for i = 1, count do
      local text = read_file(dir .. "/out" .. i)
      local first = text:match("^([^\n]*)\n") or ""
      local ok, summary = pcall(cjson.decode, first)
      assert(ok and type(summary) == "table",
        "process " .. i .. " did not finish: " .. text .. read_file(dir .. "/err" .. i))
      out[i] = { summary = summary, log = text:sub(#first + 2), stderr = read_file(dir .. "/err" .. i) }
    end
    return out
  end

  local function put(auth_type, doc)
    local path = dir .. "/cred.json"
    write_file(path, cjson.encode(doc))
    local code, out, err = junction("creds", "put", "--org", "acme", "--provider", "github",
      "--auth-type", auth_type, "--from-file", path)
    assert.are.equal(0, code, err)
    no_secrets(out, err)
    return cjson.decode(lines(out)[1]).id
  end

  local function oauth2_credential()
    return put("oauth2", { client_id = CLIENT_ID, client_secret = CLIENT_SECRET,
                           token_url = sim:url("/oauth/token"), refresh_token = REFRESH_TOKEN })
  end

  local function versions(id)
    local code, out, err = junction("creds", "list", "--org", "acme")
    assert.are.equal(0, code, err)
    no_secrets(out, err)
    for _, line in ipairs(lines(out)) do
      local c = cjson.decode(line)
      if c.id == id then
        local s = {}
        for _, v in ipairs(c.versions) do s[v.version] = v.state end
        return s
      end
    end
  end

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
    dir = sh("mktemp -d"):gsub("%s+$", "")
    data = dir .. "/data"
    keyfile = dir .. "/master.keys"
    driver = dir .. "/driver.lua"
    write_file(driver, DRIVER)
    write_file(keyfile, "# junction master keys\nk1 " ..
      sh("head -c 32 /dev/urandom | base64"):gsub("%s+", "") .. "\n")
    sim = simulator.start{ members = 5, repos = 5, tokens = { "sim-token" },
      args = { "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
               "--refresh-token", REFRESH_TOKEN } }
  end)

  teardown(function()
    if sim then sim:stop() end
    if dir then os.execute("rm -rf " .. shell_quote(dir)) end
  end)

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
    local code, out, err = junction("collect", "connectors/github.lua", "--config",
      cjson.encode({ organization = "acme", base_url = sim:url() }), "--allow-host",
      "127.0.0.1", "--org", "acme", "--credential", id)
    assert.are.equal(0, code, err)
    assert.is_true(#lines(out) > 0)
    assert.are.equal(2, stats().refresh_token)
    assert.are.equal(0, stats().refresh_token_refused)
    no_secrets(out, err)

    -- Redis holds the shared token, sealed: no usable token in any value.
    local dump, shared = redis_dump(id)
    assert.are.equal(1, #shared, "one shared token for the credential: " .. dump)
    no_secrets(dump)
    for _, f in ipairs({ "junction.db", "junction.db-wal" }) do
      no_secrets(read_file(data .. "/" .. f))
    end
  end)

  it("100 concurrent requests on an expired token cause exactly one refresh, also across two " ..
     "runtime processes sharing Redis", function()
    local id = oauth2_credential()
    local rounds = dir .. "/rounds.lua"
    write_file(rounds, ROUNDS_DRIVER)
    -- Round 1 obtains a token of 62 s: with the 60 s refresh margin the
    -- runtime renews it 2 s later, and shares it in Redis until then.
    sim:token_ttl(62)
    local start_at = string.format("%d", sh("date +%s%3N"):match("%d+") + 2000)
    local cmds = {}
    for i = 1, 2 do
      cmds[i] = env() .. table.concat({ shell_quote(BIN), "script", shell_quote(rounds),
        shell_quote(sim:url("/user")), shell_quote(sim:url("/flag")), shell_quote(id),
        shell_quote(REDIS_URL), shell_quote(data), tostring(JOBS), start_at }, " ") ..
        " > " .. shell_quote(dir .. "/rounds" .. i) .. " 2> " ..
        shell_quote(dir .. "/rounds_err" .. i) .. " < /dev/null &"
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
      local text = read_file(dir .. "/rounds" .. i)
      local first = text:match("^([^\n]*)\n")
      assert(first, "process " .. i .. " did not finish: " .. text ..
        read_file(dir .. "/rounds_err" .. i))
      local summary = cjson.decode(first)
      assert.are.same({}, summary.errors, "process " .. i)
      assert.are.equal(JOBS, summary.succeeded, "process " .. i)
      no_secrets(text, read_file(dir .. "/rounds_err" .. i))
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
    os.execute(env() .. table.concat({ shell_quote(BIN), "script", shell_quote(late),
      shell_quote(sim:url("/user")), shell_quote(sim:url("/flag")), shell_quote(id),
      shell_quote(REDIS_URL), shell_quote(data) }, " ") .. " > " .. shell_quote(dir .. "/late") ..
      " 2>&1 < /dev/null &")
    local waited = 0
    while (sim:stats().by_path or {})["/flag"] == nil do
      assert(waited < 600, "the late process did not start: " .. read_file(dir .. "/late"))
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
    local text
    for _ = 1, 1200 do
      text = read_file(dir .. "/late")
      if text:find("\n", 1, true) then break end
      os.execute("sleep 0.05")
    end
    local summary = cjson.decode(text:match("^([^\n]*)\n"))
    assert.are.same({}, summary.errors)
    assert.are.equal(1, summary.succeeded)
    assert.are.equal(2, stats().refresh_token)
    assert.are.equal(0, stats().refresh_token_refused)
    assert.are.equal("current", versions(id)[3])
    no_secrets(text)
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
