'use strict';
// Self-test for the simulator's Okta System Log (GET /api/v1/logs): polling
// requests that always carry a `next` link and return what was persisted
// since, bounded requests that end, the cursor rules, validation errors in
// Okta's shape, authentication and the rate-limit headers.
// Run: node --test tools/simulator/test/

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startSimulator } = require('../lib/spawn');
const { request } = require('../lib/request');

const AUTH = { authorization: 'SSWS okta-token' };

function links(res) {
  const out = {};
  for (const part of (res.headers.link || '').split(/,\s*(?=<)/)) {
    const m = /^<([^>]+)>;\s*rel="([^"]+)"$/.exec(part.trim());
    if (m) out[m[2]] = m[1];
  }
  return out;
}

describe('Okta System Log', () => {
  let sim;
  before(async () => {
    sim = await startSimulator(['--token', 'okta-token', '--okta-events', '250', '--seed', '3']);
  });
  after(async () => sim && sim.stop());

  const get = (path, headers = AUTH) => request(`${sim.url}${path}`, { headers });
  const append = (count) => request(`${sim.url}/_sim/okta/events`, { method: 'POST', body: { count } });

  test('polling follows next links over every event once, then keeps polling', async () => {
    const truth = (await get('/_sim/okta/events')).json();
    assert.equal(truth.count, 250);
    const seen = [];
    let res = await get('/api/v1/logs?since=2000-01-01T00:00:00Z&limit=100');
    assert.equal(res.status, 200);
    assert.equal(links(res).self, `${sim.url}/api/v1/logs?since=2000-01-01T00:00:00Z&limit=100`);
    for (let i = 0; i < 10; i++) {
      const page = res.json();
      seen.push(...page.map((e) => e.uuid));
      const next = links(res).next;
      assert.ok(next, 'a polling response always has a next link');
      assert.ok(!/since=/.test(next), 'the next link resumes from its cursor alone');
      res = await request(next, { headers: AUTH });
      if (page.length === 0) break;
    }
    assert.deepEqual(seen, truth.uuids);
    assert.equal(new Set(seen).size, 250);
    // the empty page's next link returns what is persisted afterwards
    const next = links(res).next;
    assert.deepEqual(res.json(), []);
    await append(7);
    res = await request(next, { headers: AUTH });
    assert.equal(res.json().length, 7);
    const all = (await get('/_sim/okta/events')).json().uuids;
    assert.deepEqual(res.json().map((e) => e.uuid), all.slice(250));
  });

  test('events have the LogEvent shape; published may be out of persistence order', async () => {
    const res = await get('/api/v1/logs?since=2000-01-01T00:00:00Z&limit=1000');
    const page = res.json();
    const e = page[0];
    for (const k of ['uuid', 'published', 'eventType', 'version', 'severity', 'displayMessage', 'actor', 'client', 'outcome', 'target', 'transaction']) {
      assert.ok(k in e, `field ${k}`);
    }
    assert.match(e.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(e.actor.id, /^00u/);
    const published = page.map((x) => Date.parse(x.published));
    assert.ok(published.some((t, i) => i > 0 && t < published[i - 1]), 'some event published before the previous one');
  });

  test('bounded requests are finite and in published order', async () => {
    const since = '2000-01-01T00:00:00Z';
    const until = new Date(Date.now() + 60000).toISOString();
    let res = await get(`/api/v1/logs?since=${since}&until=${until}&limit=100&sortOrder=DESCENDING`);
    assert.equal(res.status, 200);
    const seen = [];
    for (;;) {
      seen.push(...res.json());
      const next = links(res).next;
      if (!next) break;
      res = await request(next, { headers: AUTH });
      assert.equal(res.status, 200);
    }
    const total = (await get('/_sim/okta/events')).json().count;
    assert.equal(seen.length, total);
    for (let i = 1; i < seen.length; i++) assert.ok(Date.parse(seen[i].published) <= Date.parse(seen[i - 1].published));
  });

  test('validation, cursors and authentication answer in Okta shape', async () => {
    let res = await get('/api/v1/logs?since=yesterday');
    assert.equal(res.status, 400);
    assert.equal(res.json().errorCode, 'E0000001');
    assert.match(res.json().errorSummary, /date format/);
    res = await get('/api/v1/logs?limit=1001');
    assert.equal(res.status, 400);
    res = await get('/api/v1/logs?since=2000-01-01T00:00:00Z&after=1_1');
    assert.equal(res.status, 400, 'since and after exclude each other in a polling request');
    res = await get('/api/v1/logs?after=not-a-cursor');
    assert.equal(res.status, 400);
    res = await get('/api/v1/logs?filter=eventType%20eq%20%22user.session.start%22&limit=1000&since=2000-01-01T00:00:00Z');
    assert.ok(res.json().every((e) => e.eventType === 'user.session.start'));
    res = await get('/api/v1/logs', {});
    assert.equal(res.status, 401);
    assert.equal(res.json().errorCode, 'E0000011');
    res = await get('/api/v1/logs', { authorization: 'SSWS wrong' });
    assert.equal(res.status, 401);
  });

  test('rate-limit headers count down per token', async () => {
    const a = await get('/api/v1/logs?limit=1');
    const b = await get('/api/v1/logs?limit=1');
    assert.equal(a.headers['x-rate-limit-limit'], '1200');
    assert.equal(Number(b.headers['x-rate-limit-remaining']), Number(a.headers['x-rate-limit-remaining']) - 1);
    assert.ok(Number(a.headers['x-rate-limit-reset']) * 1000 > Date.now());
  });
});

test('Okta: the rate limit answers 429 E0000047 when spent; faults apply', async () => {
  const sim = await startSimulator(['--token', 'okta-token', '--okta-rate-limit', '2']);
  try {
    const get = () => request(`${sim.url}/api/v1/logs`, { headers: AUTH });
    assert.equal((await get()).status, 200);
    assert.equal((await get()).status, 200);
    const res = await get();
    assert.equal(res.status, 429);
    assert.equal(res.json().errorCode, 'E0000047');
    assert.equal(res.headers['x-rate-limit-remaining'], '0');
    await request(`${sim.url}/_sim/reset`, { method: 'POST' });
    await request(`${sim.url}/_sim/faults`, { method: 'POST', body: { path_prefix: '/api/v1/logs', mode: 'server_error', status: 500 } });
    assert.equal((await get()).status, 500);
    assert.equal((await get()).status, 200);
    const stats = (await request(`${sim.url}/_sim/stats`)).json();
    assert.equal(stats.by_route['GET /api/v1/logs'], 2); /* counted since the reset */
    assert.equal(stats.faults_injected.server_error, 1);
    assert.ok(stats.okta.polls >= 1);
  } finally {
    await sim.stop();
  }
});

test('Okta: --okta-events-per-s grows the log by itself', async () => {
  const sim = await startSimulator(['--okta-events-per-s', '50']);
  try {
    let count = 0;
    for (let i = 0; i < 50 && count < 10; i++) {
      await new Promise((r) => setTimeout(r, 100));
      count = (await request(`${sim.url}/_sim/okta/events`)).json().count;
    }
    assert.ok(count >= 10);
  } finally {
    await sim.stop();
  }
});
