'use strict';
// GET /_sim/arrivals: one arrival time per counted API request, oldest first,
// cleared by POST /_sim/reset; control requests are not counted.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { startSimulator } = require('../lib/spawn');
const { request } = require('../lib/request');

const AUTH = { authorization: 'Bearer sim-token' };

test('arrivals are recorded per API request and cleared by a reset', async () => {
  const sim = await startSimulator(['--members', '10', '--repos', '5']);
  try {
    const before = Date.now();
    for (let i = 0; i < 5; i++) {
      const r = await request(`${sim.url}/orgs/acme`, { headers: AUTH });
      assert.equal(r.status, 200);
    }
    await request(`${sim.url}/_sim/stats`);
    const after = Date.now();
    const a = (await request(`${sim.url}/_sim/arrivals`)).json();
    assert.equal(a.arrivals.length, 5);
    assert.equal(a.dropped, 0);
    for (let i = 0; i < a.arrivals.length; i++) {
      assert.ok(a.arrivals[i] >= before - 1 && a.arrivals[i] <= after + 1, `arrival ${a.arrivals[i]}`);
      if (i > 0) assert.ok(a.arrivals[i] >= a.arrivals[i - 1]);
    }
    await request(`${sim.url}/_sim/reset`, { method: 'POST' });
    const b = (await request(`${sim.url}/_sim/arrivals`)).json();
    assert.deepEqual(b.arrivals, []);
  } finally {
    await sim.stop();
  }
});
