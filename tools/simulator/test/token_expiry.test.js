'use strict';
// Self-test for the lifetime of exchanged access tokens: --client-token-ttl
// and POST /_sim/token_ttl set expires_in, the API refuses a token after it
// (401 Bad credentials, as GitHub refuses an expired token), POST
// /_sim/expire_exchanged expires every exchanged token at once, and GET
// /_sim/stats lists each token's uses without the token.
// Run: node --test tools/simulator/test/

const { test, describe, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startSimulator } = require('../lib/spawn');
const { request } = require('../lib/request');

const CLIENT_ID = 'sim-ttl-client';
const CLIENT_SECRET = 'sim-ttl-secret';

describe('exchanged token lifetimes', () => {
  let sim;
  before(async () => {
    sim = await startSimulator(['--members', '3', '--repos', '3', '--client-id', CLIENT_ID, '--client-secret', CLIENT_SECRET, '--client-token-ttl', '120']);
  });
  after(async () => {
    await sim.stop();
  });
  beforeEach(async () => {
    await request(`${sim.url}/_sim/reset`, { method: 'POST' });
  });

  async function exchange() {
    const basic = Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64');
    const res = await request(`${sim.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` },
      body: 'grant_type=client_credentials',
    });
    assert.equal(res.status, 200, res.text);
    return res.json();
  }
  const user = (token) => request(`${sim.url}/user`, { headers: { authorization: `Bearer ${token}` } });
  const control = async (method, path, body) => {
    const res = await request(`${sim.url}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: res.json() };
  };

  test('--client-token-ttl is the expires_in; /_sim/token_ttl changes it, reset restores it', async () => {
    assert.equal((await exchange()).expires_in, 120);
    assert.deepEqual((await control('POST', '/_sim/token_ttl', { seconds: 62 })).body, { seconds: 62 });
    assert.equal((await exchange()).expires_in, 62);
    await control('POST', '/_sim/reset');
    assert.equal((await exchange()).expires_in, 120);
    for (const bad of [0, -1, 1.5, '60', 86401]) {
      assert.equal((await control('POST', '/_sim/token_ttl', { seconds: bad })).status, 400);
    }
  });

  test('an expired token answers 401 Bad credentials and is counted, never listed', async () => {
    const a = await exchange();
    const b = await exchange();
    assert.equal((await user(a.access_token)).status, 200);
    assert.equal((await user(b.access_token)).status, 200);
    // every token exchanged so far, the earlier tests' too
    assert.ok((await control('POST', '/_sim/expire_exchanged')).body.expired >= 2);
    const res = await user(a.access_token);
    assert.equal(res.status, 401);
    assert.equal(res.json().message, 'Bad credentials');
    const c = await exchange();
    assert.equal((await user(c.access_token)).status, 200);
    const stats = await control('GET', '/_sim/stats');
    assert.deepEqual(stats.body.tokens, [
      { n: 1, grant: 'client_credentials', expires_in: 120, uses: 1, expired_uses: 1, live: false },
      { n: 2, grant: 'client_credentials', expires_in: 120, uses: 1, expired_uses: 0, live: false },
      { n: 3, grant: 'client_credentials', expires_in: 120, uses: 1, expired_uses: 0, live: true },
    ]);
    assert.equal(JSON.stringify(stats.body.tokens).includes(a.access_token), false);
  });

  test('a token expires on its own after expires_in', async () => {
    await control('POST', '/_sim/token_ttl', { seconds: 1 });
    const a = await exchange();
    assert.equal(a.expires_in, 1);
    // Wait for the expiry the simulator itself reports, not for a duration.
    while ((await control('GET', '/_sim/stats')).body.tokens[0].live) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await user(a.access_token)).status, 401);
  });
});
