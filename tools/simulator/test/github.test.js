'use strict';
// Self-test for the provider simulator (GitHub). Run: node --test tools/simulator/test/
// Starts real simulator processes on ephemeral ports and talks HTTP to them.

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { startSimulator } = require('../lib/spawn');
const { request } = require('../lib/request');
const { generateDataset } = require('../providers/github');

const TOKEN = 'sim-token';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const HUGE_BYTES = 4 * 1024 * 1024;

const get = (url, headers = AUTH, opts = {}) => request(url, { headers, ...opts });

function parseLink(h) {
  const out = {};
  if (!h) return out;
  for (const part of h.split(',')) {
    const m = /<([^>]+)>;\s*rel="([^"]+)"/.exec(part.trim());
    if (m) out[m[2]] = m[1];
  }
  return out;
}

function relOrder(h) {
  return h ? [...h.matchAll(/rel="([^"]+)"/g)].map((m) => m[1]) : [];
}

async function followAll(firstUrl, headers = AUTH) {
  const items = [];
  let url = firstUrl;
  let pages = 0;
  while (url) {
    const r = await get(url, headers);
    assert.equal(r.status, 200, `GET ${url} -> ${r.status} ${r.text}`);
    const page = r.json();
    assert.ok(Array.isArray(page));
    items.push(...page);
    pages++;
    url = parseLink(r.headers.link).next;
    assert.ok(pages < 10000, 'pagination does not terminate');
  }
  return { items, pages };
}

async function control(sim, method, path, body) {
  const r = await request(`${sim.url}${path}`, { method, body });
  return { status: r.status, body: r.json() };
}

// ---------------------------------------------------------------------------

describe('github simulator (default data set)', () => {
  let sim;
  const ds = generateDataset({ seed: 1 });
  const org = ds.orgs[0];

  before(async () => {
    sim = await startSimulator(['--huge-bytes', String(HUGE_BYTES)]);
  });
  after(async () => {
    if (sim) await sim.stop();
  });

  test('data set is deterministic and large', () => {
    const again = generateDataset({ seed: 1 });
    assert.deepEqual(again.orgs[0].members.map((m) => [m.login, m.id, m.role, m.twoFactor]), org.members.map((m) => [m.login, m.id, m.role, m.twoFactor]));
    assert.deepEqual(again.orgs[0].repos.map((r) => r.name), org.repos.map((r) => r.name));
    const other = generateDataset({ seed: 2 });
    assert.notDeepEqual(other.orgs[0].members.map((m) => m.login), org.members.map((m) => m.login));
    assert.equal(org.login, 'acme');
    assert.equal(org.members.length, 2500);
    assert.equal(org.repos.length, 1200);
    const no2fa = org.members.filter((m) => m.twoFactor === 'none').length / org.members.length;
    assert.ok(no2fa > 0.04 && no2fa < 0.1, `2FA-disabled share ${no2fa}`);
    const prot = org.repos.filter((r) => r.protection).length / org.repos.length;
    assert.ok(prot > 0.5 && prot < 0.7, `protected share ${prot}`);
    assert.ok(org.members.some((m) => m.role === 'admin'));
    for (const v of ['public', 'private', 'internal']) assert.ok(org.repos.some((r) => r.visibility === v), v);
    assert.ok(org.repos.some((r) => r.archived));
    assert.ok(new Set(org.repos.map((r) => r.defaultBranch)).size >= 3);
  });

  test('GET /_sim/dataset summarizes the same data', async () => {
    const { status, body } = await control(sim, 'GET', '/_sim/dataset');
    assert.equal(status, 200);
    const s = body.orgs[0];
    assert.equal(s.members, 2500);
    assert.equal(s.repos, 1200);
    assert.equal(s.two_factor_disabled, org.members.filter((m) => m.twoFactor === 'none').length);
    assert.equal(s.protected_default_branches, org.repos.filter((r) => r.protection).length);
  });

  test('members: following Link rel="next" visits every member exactly once', async () => {
    const { items, pages } = await followAll(`${sim.url}/orgs/acme/members?per_page=100`);
    assert.equal(pages, 25);
    assert.equal(items.length, 2500);
    const ids = items.map((m) => m.id);
    assert.equal(new Set(ids).size, 2500, 'duplicates across pages');
    assert.deepEqual(ids, org.members.map((m) => m.id));
    const m = items[1];
    for (const k of ['login', 'id', 'node_id', 'avatar_url', 'url', 'html_url', 'type', 'site_admin']) assert.ok(k in m, k);
    assert.equal(m.type, 'User');
    assert.equal(m.site_admin, false);
    assert.equal(Buffer.from(m.node_id, 'base64').toString(), `04:User${m.id}`);
  });

  test('members: Link header rels, order, and absolute URLs from the Host header', async () => {
    const first = await get(`${sim.url}/orgs/acme/members?per_page=100`);
    assert.deepEqual(relOrder(first.headers.link), ['next', 'last']);
    const links = parseLink(first.headers.link);
    // GitHub links list pages by organization id
    assert.equal(links.next, `${sim.url}/organizations/${org.id}/members?per_page=100&page=2`);
    assert.equal(links.last, `${sim.url}/organizations/${org.id}/members?per_page=100&page=25`);

    const mid = await get(`${sim.url}/orgs/acme/members?per_page=100&page=5`);
    assert.deepEqual(relOrder(mid.headers.link), ['prev', 'next', 'last', 'first']);
    const ml = parseLink(mid.headers.link);
    assert.match(ml.prev, /page=4$/);
    assert.match(ml.next, /page=6$/);
    assert.match(ml.first, /page=1$/);

    const second = await get(`${sim.url}/orgs/acme/members?per_page=100&page=2`);
    assert.deepEqual(relOrder(second.headers.link), ['prev', 'next', 'last', 'first']);

    const last = await get(`${sim.url}/orgs/acme/members?per_page=100&page=25`);
    assert.deepEqual(relOrder(last.headers.link), ['prev', 'first']);

    const viaHost = await get(`${sim.url}/orgs/acme/members?filter=2fa_disabled&per_page=10`, { ...AUTH, host: 'sim.example:8443' });
    const hl = parseLink(viaHost.headers.link);
    assert.equal(hl.next, `http://sim.example:8443/organizations/${org.id}/members?filter=2fa_disabled&per_page=10&page=2`);
    assert.ok(viaHost.json()[0].url.startsWith('http://sim.example:8443/users/'));

    const beyond = await get(`${sim.url}/orgs/acme/members?per_page=100&page=26`);
    assert.equal(beyond.status, 200);
    assert.deepEqual(beyond.json(), []);
    assert.deepEqual(relOrder(beyond.headers.link), ['prev', 'first']);
  });

  test('members: per_page defaults to 30 and is capped at 100', async () => {
    const def = await get(`${sim.url}/orgs/acme/members`);
    assert.equal(def.json().length, 30);
    assert.match(parseLink(def.headers.link).last, /page=84$/);
    const capped = await get(`${sim.url}/orgs/acme/members?per_page=1000`);
    assert.equal(capped.json().length, 100);
    assert.match(parseLink(capped.headers.link).last, /per_page=1000&page=25$/);
    const junk = await get(`${sim.url}/orgs/acme/members?per_page=abc&page=xyz`);
    assert.equal(junk.json().length, 30);
    assert.equal(junk.json()[0].id, org.members[0].id);
  });

  test('members: filter=2fa_disabled and role filters match the data set', async () => {
    const expect2fa = org.members.filter((m) => m.twoFactor === 'none').map((m) => m.id);
    const expectAdmin = org.members.filter((m) => m.role === 'admin').map((m) => m.id);
    const expectMember = org.members.filter((m) => m.role === 'member').map((m) => m.id);
    const expectBoth = org.members.filter((m) => m.role === 'admin' && m.twoFactor === 'none').map((m) => m.id);

    const f = await followAll(`${sim.url}/orgs/acme/members?filter=2fa_disabled&per_page=100`);
    assert.deepEqual(f.items.map((m) => m.id), expect2fa);
    const a = await followAll(`${sim.url}/orgs/acme/members?role=admin&per_page=100`);
    assert.deepEqual(a.items.map((m) => m.id), expectAdmin);
    const mm = await followAll(`${sim.url}/orgs/acme/members?role=member&per_page=100`);
    assert.equal(mm.items.length, expectMember.length);
    assert.equal(a.items.length + mm.items.length, 2500);
    const both = await followAll(`${sim.url}/orgs/acme/members?filter=2fa_disabled&role=admin`);
    assert.deepEqual(both.items.map((m) => m.id), expectBoth);
    const all = await get(`${sim.url}/orgs/acme/members?filter=all&role=all&per_page=1`);
    assert.match(parseLink(all.headers.link).last, /page=2500$/);

    const bad = await get(`${sim.url}/orgs/acme/members?filter=nope`);
    assert.equal(bad.status, 422);
    assert.equal(bad.json().message, 'Validation Failed');
    assert.equal((await get(`${sim.url}/orgs/acme/members?role=owner`)).status, 422);
  });

  test('repos: pagination, type filter, sorting and object shape', async () => {
    const { items, pages } = await followAll(`${sim.url}/orgs/acme/repos?per_page=100`);
    assert.equal(pages, 12);
    assert.equal(items.length, 1200);
    assert.equal(new Set(items.map((r) => r.id)).size, 1200);
    // default: sort=created, direction=desc
    for (let i = 1; i < items.length; i++) assert.ok(items[i - 1].created_at >= items[i].created_at, 'created desc');
    const r = items[0];
    for (const k of ['id', 'node_id', 'name', 'full_name', 'private', 'owner', 'visibility', 'archived', 'disabled', 'fork',
      'default_branch', 'created_at', 'updated_at', 'pushed_at', 'permissions', 'html_url', 'url', 'topics']) {
      assert.ok(k in r, k);
    }
    assert.equal(r.full_name, `acme/${r.name}`);
    assert.equal(r.owner.login, 'acme');
    assert.equal(r.owner.type, 'Organization');
    assert.equal(r.private, r.visibility !== 'public');
    assert.match(r.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const vis = new Set(items.map((x) => x.visibility));
    assert.deepEqual([...vis].sort(), ['internal', 'private', 'public']);
    assert.ok(items.some((x) => x.archived) && items.some((x) => !x.archived));

    const pub = await followAll(`${sim.url}/orgs/acme/repos?type=public&per_page=100`);
    assert.equal(pub.items.length, org.repos.filter((x) => x.visibility === 'public').length);
    assert.ok(pub.items.every((x) => x.visibility === 'public' && x.private === false));
    const priv = await followAll(`${sim.url}/orgs/acme/repos?type=private&per_page=100`);
    assert.equal(priv.items.length + pub.items.length, 1200);
    const forks = await followAll(`${sim.url}/orgs/acme/repos?type=forks&per_page=100`);
    assert.ok(forks.items.length > 0 && forks.items.every((x) => x.fork));

    const byName = await followAll(`${sim.url}/orgs/acme/repos?sort=full_name&per_page=100`);
    const names = byName.items.map((x) => x.full_name.toLowerCase());
    assert.deepEqual(names, [...names].sort());
    const asc = await get(`${sim.url}/orgs/acme/repos?sort=pushed&direction=asc&per_page=5`);
    const pushed = asc.json().map((x) => x.pushed_at);
    assert.deepEqual(pushed, [...pushed].sort());
    assert.equal((await get(`${sim.url}/orgs/acme/repos?type=weird`)).status, 422);

    const link = parseLink((await get(`${sim.url}/orgs/acme/repos?per_page=100`)).headers.link);
    assert.equal(link.next, `${sim.url}/organizations/${org.id}/repos?per_page=100&page=2`);
  });

  test('GET /orgs/{org} returns the full settings object, case-insensitively', async () => {
    const r = await get(`${sim.url}/orgs/ACME`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    const o = r.json();
    assert.equal(o.login, 'acme');
    assert.equal(o.id, org.id);
    assert.equal(o.type, 'Organization');
    for (const k of ['two_factor_requirement_enabled', 'default_repository_permission', 'members_can_create_repositories',
      'web_commit_signoff_required', 'advanced_security_enabled_for_new_repositories', 'members_allowed_repository_creation_type',
      'members_can_fork_private_repositories', 'secret_scanning_enabled_for_new_repositories', 'plan', 'billing_email',
      'created_at', 'updated_at', 'members_url', 'repos_url']) {
      assert.ok(k in o, k);
    }
    assert.equal(typeof o.two_factor_requirement_enabled, 'boolean');
    // members without 2FA exist, so the requirement cannot be on
    assert.equal(o.two_factor_requirement_enabled, false);
    assert.ok(['read', 'write', 'admin', 'none'].includes(o.default_repository_permission));
    assert.equal(o.public_repos + o.total_private_repos, 1200);
    assert.equal(o.plan.filled_seats, 2500);
  });

  test('GET /user, /repos/{owner}/{repo}, /repositories/{id}', async () => {
    const u = await get(`${sim.url}/user`);
    assert.equal(u.status, 200);
    assert.equal(u.json().login, 'sim-owner');
    assert.equal(u.json().two_factor_authentication, true);
    const target = org.repos[17];
    const r = await get(`${sim.url}/repos/acme/${target.name.toUpperCase()}`);
    assert.equal(r.status, 200);
    const o = r.json();
    assert.equal(o.id, target.id);
    assert.equal(o.default_branch, target.defaultBranch);
    assert.equal(o.organization.login, 'acme');
    assert.ok('security_and_analysis' in o && 'allow_merge_commit' in o);
    const byId = await get(`${sim.url}/repositories/${target.id}`);
    assert.equal(byId.json().full_name, target.fullName);
  });

  test('401 Bad credentials / Requires authentication, both auth schemes', async () => {
    const bad = await get(`${sim.url}/orgs/acme`, { authorization: 'Bearer wrong' });
    assert.equal(bad.status, 401);
    assert.deepEqual(bad.json(), { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' });
    assert.ok(bad.headers['x-github-request-id']);
    assert.ok(bad.headers['x-ratelimit-limit']);
    const none = await get(`${sim.url}/orgs/acme/members`, {});
    assert.equal(none.status, 401);
    assert.equal(none.json().message, 'Requires authentication');
    const scheme = await get(`${sim.url}/orgs/acme`, { authorization: `token ${TOKEN}` });
    assert.equal(scheme.status, 200);
    const basic = await get(`${sim.url}/orgs/acme`, { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` });
    assert.equal(basic.status, 200);
    const weird = await get(`${sim.url}/orgs/acme`, { authorization: TOKEN });
    assert.equal(weird.status, 401);
    // /rate_limit is allowed anonymously (unauthenticated budget of 60)
    const rl = await get(`${sim.url}/rate_limit`, {});
    assert.equal(rl.status, 200);
    assert.equal(rl.json().resources.core.limit, 60);
  });

  test('404 Not Found for unknown org, repo and route', async () => {
    for (const p of ['/orgs/no-such-org', '/orgs/no-such-org/members', '/orgs/no-such-org/repos', '/repos/acme/no-such-repo',
      '/repos/nobody/x', '/repos/acme/no-such-repo/branches/main/protection', '/not/a/route', '/organizations/1/members']) {
      const r = await get(`${sim.url}${p}`);
      assert.equal(r.status, 404, p);
      assert.equal(r.json().message, 'Not Found', p);
      assert.equal(r.json().status, '404');
      assert.ok(r.json().documentation_url.startsWith('https://docs.github.com/'), p);
    }
  });

  test('branch protection: object for protected, 404 "Branch not protected" otherwise', async () => {
    const strict = org.repos.find((r) => r.protection && r.protection.tier === 'strict');
    const basic = org.repos.find((r) => r.protection && r.protection.tier === 'basic');
    const unprotected = org.repos.find((r) => !r.protection);
    const extra = org.repos.find((r) => r.branches.includes('release/2026.09'));

    const s = await get(`${sim.url}/repos/acme/${strict.name}/branches/${strict.defaultBranch}/protection`);
    assert.equal(s.status, 200);
    const p = s.json();
    assert.equal(p.url, `${sim.url}/repos/acme/${strict.name}/branches/${strict.defaultBranch}/protection`);
    assert.equal(p.enforce_admins.enabled, true);
    assert.ok(p.required_pull_request_reviews.required_approving_review_count >= 2);
    assert.equal(p.required_pull_request_reviews.dismiss_stale_reviews, true);
    assert.equal(p.required_pull_request_reviews.require_code_owner_reviews, true);
    assert.equal(p.required_status_checks.strict, true);
    assert.ok(Array.isArray(p.required_status_checks.contexts));
    for (const k of ['required_linear_history', 'allow_force_pushes', 'allow_deletions', 'required_signatures', 'required_conversation_resolution']) {
      assert.equal(typeof p[k].enabled, 'boolean', k);
    }

    const b = (await get(`${sim.url}/repos/acme/${basic.name}/branches/${basic.defaultBranch}/protection`)).json();
    assert.equal(b.required_pull_request_reviews, undefined);
    assert.equal(b.enforce_admins.enabled, false);

    const u = await get(`${sim.url}/repos/acme/${unprotected.name}/branches/${unprotected.defaultBranch}/protection`);
    assert.equal(u.status, 404);
    assert.deepEqual(u.json(), {
      message: 'Branch not protected',
      documentation_url: 'https://docs.github.com/rest/branches/branch-protection#get-branch-protection',
      status: '404',
    });
    const slash = await get(`${sim.url}/repos/acme/${extra.name}/branches/release/2026.09/protection`);
    assert.equal(slash.status, 404);
    assert.equal(slash.json().message, 'Branch not protected');
    const missing = await get(`${sim.url}/repos/acme/${strict.name}/branches/no-such-branch/protection`);
    assert.equal(missing.status, 404);
    assert.equal(missing.json().message, 'Branch not found');

    // every protected default branch answers 200, every other one 404
    let ok = 0;
    for (const r of org.repos.slice(0, 200)) {
      const x = await get(`${sim.url}/repos/${r.fullName}/branches/${r.defaultBranch}/protection`);
      assert.equal(x.status, r.protection ? 200 : 404, r.fullName);
      if (x.status === 200) ok++;
    }
    assert.ok(ok > 80 && ok < 160);
  });

  test('rate-limit headers: remaining decreases, /rate_limit and 304 do not count', async () => {
    await control(sim, 'POST', '/_sim/reset');
    const seen = [];
    for (let i = 0; i < 5; i++) {
      const r = await get(`${sim.url}/orgs/acme/members?per_page=1&page=${i + 1}`);
      seen.push(r.headers);
    }
    for (const h of seen) {
      assert.equal(h['x-ratelimit-limit'], '5000');
      assert.equal(h['x-ratelimit-resource'], 'core');
      assert.match(h['x-ratelimit-reset'], /^\d{10}$/);
      assert.match(h['x-github-request-id'], /^[0-9A-F:]+$/);
      assert.equal(h['content-type'], 'application/json; charset=utf-8');
    }
    assert.deepEqual(seen.map((h) => Number(h['x-ratelimit-remaining'])), [4999, 4998, 4997, 4996, 4995]);
    assert.deepEqual(seen.map((h) => Number(h['x-ratelimit-used'])), [1, 2, 3, 4, 5]);
    assert.equal(new Set(seen.map((h) => h['x-ratelimit-reset'])).size, 1);
    assert.equal(new Set(seen.map((h) => h['x-github-request-id'])).size, 5);
    const rl = await get(`${sim.url}/rate_limit`);
    assert.equal(rl.json().resources.core.remaining, 4995);
    assert.equal(rl.json().rate.used, 5);
    const again = await get(`${sim.url}/rate_limit`);
    assert.equal(again.json().rate.used, 5);
    // conditional request
    const first = await get(`${sim.url}/orgs/acme`);
    assert.equal(first.headers['x-ratelimit-remaining'], '4994');
    const cond = await get(`${sim.url}/orgs/acme`, { ...AUTH, 'if-none-match': first.headers.etag });
    assert.equal(cond.status, 304);
    assert.equal(cond.headers['x-ratelimit-remaining'], '4994');
  });

  test('fault: secondary_rate_limit (count, then normal behaviour resumes)', async () => {
    const add = await control(sim, 'POST', '/_sim/faults', { path_prefix: '/orgs/acme/repos', mode: 'secondary_rate_limit', count: 2 });
    assert.equal(add.status, 201);
    for (let i = 0; i < 2; i++) {
      const r = await get(`${sim.url}/orgs/acme/repos?per_page=1`);
      assert.equal(r.status, 403);
      assert.equal(r.headers['retry-after'], '60');
      assert.notEqual(r.headers['x-ratelimit-remaining'], '0');
      assert.match(r.json().message, /secondary rate limit/);
    }
    assert.equal((await get(`${sim.url}/orgs/acme/repos?per_page=1`)).status, 200);
    // other paths are untouched
    assert.equal((await get(`${sim.url}/orgs/acme`)).status, 200);
  });

  test('fault: rate_limit_429 and server_error', async () => {
    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/orgs/acme', mode: 'rate_limit_429', count: 1, retry_after: 7 });
    const r = await get(`${sim.url}/orgs/acme`);
    assert.equal(r.status, 429);
    assert.equal(r.headers['retry-after'], '7');
    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/orgs/acme', mode: 'server_error', count: 1 });
    assert.equal((await get(`${sim.url}/orgs/acme`)).status, 502);
    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/orgs/acme', mode: 'server_error', status: 503 });
    assert.equal((await get(`${sim.url}/orgs/acme`)).status, 503);
    assert.equal((await get(`${sim.url}/orgs/acme`)).status, 200);
  });

  test('fault: bad_json is a 200 whose body does not parse', async () => {
    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/orgs/acme/members', mode: 'bad_json' });
    const r = await get(`${sim.url}/orgs/acme/members`);
    assert.equal(r.status, 200);
    assert.equal(Number(r.headers['content-length']), r.body.length);
    assert.throws(() => r.json(), SyntaxError);
    const next = await get(`${sim.url}/orgs/acme/members`);
    assert.doesNotThrow(() => next.json());
  });

  test('fault: truncated sends less than Content-Length, then closes', async () => {
    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/orgs/acme/members', mode: 'truncated' });
    await assert.rejects(get(`${sim.url}/orgs/acme/members?per_page=100`), /aborted|incomplete|ECONNRESET|socket hang up/);
    assert.equal((await get(`${sim.url}/orgs/acme/members?per_page=100`)).json().length, 100);
  });

  test('fault: huge streams a valid JSON array of at least --huge-bytes', async () => {
    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/orgs/acme/members', mode: 'huge' });
    const r = await get(`${sim.url}/orgs/acme/members`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], undefined);
    assert.ok(r.body.length >= HUGE_BYTES && r.body.length < HUGE_BYTES + 200 * 1024, String(r.body.length));
    const arr = r.json();
    assert.ok(Array.isArray(arr) && arr.length > 1000);
    assert.ok(arr[5].login && arr[5].id);
    const small = await get(`${sim.url}/orgs/acme/members?_sim_fault=huge&_sim_bytes=100000`);
    assert.ok(small.body.length >= 100000 && Array.isArray(small.json()));
  });

  test('fault: slow drips the body one byte every 200 ms', async () => {
    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/orgs/acme', mode: 'slow' });
    const times = [];
    let status;
    let firstByte;
    const t0 = Date.now();
    await new Promise((resolve, reject) => {
      const req = http.get(`${sim.url}/orgs/acme`, { headers: AUTH, agent: false }, (res) => {
        status = res.statusCode;
        res.on('data', (c) => {
          if (firstByte === undefined) firstByte = c.toString();
          for (let i = 0; i < c.length; i++) times.push(Date.now());
          if (times.length >= 4) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', (e) => (times.length >= 4 ? resolve() : reject(e)));
    });
    assert.equal(status, 200);
    assert.equal(firstByte, '{');
    // Byte i cannot arrive before i drips have passed. (The gaps between
    // arrivals are not a measure: a client that reads one byte late reads the
    // next one sooner after it.)
    for (let i = 1; i < times.length; i++) {
      assert.ok(times[i] - t0 >= 150 * i, `byte ${i} after ${times[i] - t0} ms`);
    }
    assert.equal((await get(`${sim.url}/orgs/acme`)).status, 200);
  });

  test('fault: hang never answers; reset destroys the connection', async () => {
    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/user', mode: 'hang' });
    const t0 = Date.now();
    await assert.rejects(get(`${sim.url}/user`, AUTH, { timeout: 600 }), /timeout/);
    assert.ok(Date.now() - t0 >= 550);
    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/user', mode: 'reset' });
    await assert.rejects(get(`${sim.url}/user`), /ECONNRESET|socket hang up/);
    assert.equal((await get(`${sim.url}/user`)).status, 200);
  });

  test('faults: query-parameter form, Link-followed pages, after/query matching, listing and clearing', async () => {
    assert.equal((await get(`${sim.url}/orgs/acme?_sim_fault=server_error`)).status, 502);
    assert.equal((await get(`${sim.url}/orgs/acme?_sim_fault=secondary_rate_limit&_sim_retry_after=3`)).headers['retry-after'], '3');

    // "/orgs/acme/members" also covers the /organizations/{id}/members pages GitHub links to
    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/orgs/acme/members', mode: 'server_error', query: { page: '3' } });
    let url = `${sim.url}/orgs/acme/members?per_page=100`;
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const r = await get(url);
      statuses.push(r.status);
      if (r.status === 200) url = parseLink(r.headers.link).next;
    }
    assert.deepEqual(statuses, [200, 200, 502]);
    assert.equal((await get(url)).status, 200);

    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/orgs/acme', mode: 'server_error', after: 2, count: 1 });
    const seq = [];
    for (let i = 0; i < 4; i++) seq.push((await get(`${sim.url}/orgs/acme`)).status);
    assert.deepEqual(seq, [200, 200, 502, 200]);

    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/orgs', mode: 'server_error', count: -1 });
    await control(sim, 'POST', '/_sim/faults', { path_prefix: '/repos', mode: 'reset', token: 'someone-else' });
    const listed = await control(sim, 'GET', '/_sim/faults');
    assert.equal(listed.body.faults.length, 2);
    assert.ok(listed.body.modes.includes('truncated'));
    for (let i = 0; i < 3; i++) assert.equal((await get(`${sim.url}/orgs/acme`)).status, 502);
    assert.equal((await get(`${sim.url}/repos/${org.repos[0].fullName}`)).status, 200, 'token filter');
    const cleared = await control(sim, 'DELETE', '/_sim/faults');
    assert.equal(cleared.body.cleared, 2);
    assert.equal((await get(`${sim.url}/orgs/acme`)).status, 200);

    const bad = await control(sim, 'POST', '/_sim/faults', { mode: 'explode' });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /unknown mode/);
  });

  test('stats: counts per path, route, token and second; reset', async () => {
    await control(sim, 'DELETE', '/_sim/faults');
    assert.equal((await control(sim, 'POST', '/_sim/reset')).status, 200);
    for (let i = 0; i < 3; i++) await get(`${sim.url}/orgs/acme/members?page=${i + 1}`);
    await get(`${sim.url}/orgs/acme`);
    await get(`${sim.url}/orgs/acme`, {});
    await get(`${sim.url}/orgs/acme`, { authorization: 'Bearer nope' });
    await get(`${sim.url}/orgs/acme?_sim_fault=server_error`);
    const { body: s } = await control(sim, 'GET', '/_sim/stats');
    assert.equal(s.total, 7);
    assert.deepEqual(s.by_path, { '/orgs/acme/members': 3, '/orgs/acme': 4 });
    assert.deepEqual(s.by_route, { 'GET /orgs/{org}/members': 3, 'GET /orgs/{org}': 4 });
    assert.deepEqual(s.by_token, { [TOKEN]: 5, '(none)': 1, '(invalid)': 1 });
    assert.deepEqual(s.by_status, { 200: 4, 401: 2, 502: 1 });
    assert.deepEqual(s.faults_injected, { server_error: 1 });
    assert.equal(s.per_second.reduce((n, b) => n + b.count, 0), 7);
    assert.ok(s.per_second.every((b) => Number.isInteger(b.t) && b.count > 0));
    // the budget was reset too
    const r = await get(`${sim.url}/rate_limit`);
    assert.equal(r.json().rate.used, 4);
    await control(sim, 'POST', '/_sim/reset');
    assert.equal((await control(sim, 'GET', '/_sim/stats')).body.total, 0);
  });

  test('stdout carries only the LISTENING line', () => {
    assert.match(sim.stdout(), /^LISTENING \d+\n$/);
  });
});

describe('github simulator (small data set, tight limits)', () => {
  let sim;
  before(async () => {
    sim = await startSimulator(['--seed', '9', '--orgs', 'acme,globex', '--members', '10', '--repos', '5', '--token', 'tok-a',
      '--token', 'tok-b', '--rate-limit', '3', '--verbose']);
  });
  after(async () => {
    if (sim) await sim.stop();
  });

  test('several orgs and tokens; small org fits in one page without Link', async () => {
    const r = await get(`${sim.url}/orgs/globex/members`, { authorization: 'Bearer tok-b' });
    assert.equal(r.status, 200);
    assert.equal(r.json().length, 10);
    assert.equal(r.headers.link, undefined);
    assert.equal((await get(`${sim.url}/user`, { authorization: 'Bearer tok-b' })).json().login, 'sim-user-2');
    assert.equal((await get(`${sim.url}/orgs/acme`, AUTH)).status, 401, 'default token not configured');
  });

  test('primary rate limit: 403 with remaining 0 once the budget is spent, per token', async () => {
    await control(sim, 'POST', '/_sim/reset');
    const A = { authorization: 'Bearer tok-a' };
    const rem = [];
    for (let i = 0; i < 3; i++) {
      const r = await get(`${sim.url}/orgs/acme`, A);
      assert.equal(r.status, 200);
      rem.push(r.headers['x-ratelimit-remaining']);
    }
    assert.deepEqual(rem, ['2', '1', '0']);
    const over = await get(`${sim.url}/orgs/acme/repos`, A);
    assert.equal(over.status, 403);
    assert.equal(over.headers['x-ratelimit-remaining'], '0');
    assert.equal(over.headers['retry-after'], undefined);
    assert.match(over.json().message, /^API rate limit exceeded for user ID \d+\./);
    assert.ok(Number(over.headers['x-ratelimit-reset']) > Date.now() / 1000);
    // /rate_limit still answers and another token has its own budget
    assert.equal((await get(`${sim.url}/rate_limit`, A)).json().rate.remaining, 0);
    assert.equal((await get(`${sim.url}/orgs/acme`, { authorization: 'Bearer tok-b' })).status, 200);
    // control API can restore or drain budgets
    const set = await control(sim, 'POST', '/_sim/rate_limit', { token: 'tok-a', remaining: 2 });
    assert.equal(set.body['tok-a'].remaining, 2);
    assert.equal((await get(`${sim.url}/orgs/acme`, A)).status, 200);
    await control(sim, 'POST', '/_sim/reset');
    assert.equal((await get(`${sim.url}/orgs/acme`, A)).headers['x-ratelimit-remaining'], '2');
  });

  test('--verbose logs requests on stderr only', () => {
    assert.match(sim.stdout(), /^LISTENING \d+\n$/);
    assert.match(sim.stderr(), /GET \/orgs\/acme/);
  });
});

describe('github simulator (process behaviour)', () => {
  test('--latency-ms delays responses; --secondary-concurrency limits parallel requests', async () => {
    const sim = await startSimulator(['--members', '50', '--repos', '10', '--latency-ms', '150', '--secondary-concurrency', '4']);
    try {
      const t0 = Date.now();
      assert.equal((await get(`${sim.url}/orgs/acme`)).status, 200);
      assert.ok(Date.now() - t0 >= 140);
      const all = await Promise.all(Array.from({ length: 12 }, () => get(`${sim.url}/orgs/acme`)));
      const codes = all.map((r) => r.status);
      assert.equal(codes.filter((c) => c === 200).length, 4, codes.join(','));
      assert.ok(all.filter((r) => r.status === 403).every((r) => /secondary rate limit/.test(r.json().message)));
      const { body: s } = await control(sim, 'GET', '/_sim/stats');
      assert.ok(s.peak_in_flight >= 12);
    } finally {
      await sim.stop();
    }
  });

  test('exits cleanly on SIGTERM, on SIGINT and when stdin closes, even with hanging requests', async () => {
    const a = await startSimulator(['--members', '5', '--repos', '2']);
    // leave a hanging request open; shutdown must not wait for it
    get(`${a.url}/user?_sim_fault=hang`, AUTH, { timeout: 5000 }).catch(() => {});
    await new Promise((r) => setTimeout(r, 100));
    a.child.kill('SIGTERM');
    assert.deepEqual(await a.exited, { code: 0, signal: null });

    const b = await startSimulator(['--members', '5', '--repos', '2']);
    b.child.kill('SIGINT');
    assert.deepEqual(await b.exited, { code: 0, signal: null });

    const c = await startSimulator(['--members', '5', '--repos', '2']);
    c.child.stdin.end();
    assert.deepEqual(await c.exited, { code: 0, signal: null });
  });

  test('rejects bad arguments', async () => {
    await assert.rejects(startSimulator(['--members', 'many']), /exited with code 2/);
    await assert.rejects(startSimulator(['--bogus']), /exited with code 2/);
  });
});
