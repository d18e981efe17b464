'use strict';
// Self-test for private_key_jwt client authentication at POST /oauth/token
// (client_credentials grant), including the --client-key-id check of the
// assertion's kid. Run: node --test tools/simulator/test/

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startSimulator } = require('../lib/spawn');
const { request } = require('../lib/request');

const CLIENT_ID = 'sim-assertion-client';

function b64url(obj) {
  return Buffer.from(JSON.stringify(obj)).toString('base64url');
}

function assertion(privateKey, header, claims) {
  const input = `${b64url({ alg: 'RS256', typ: 'JWT', ...header })}.${b64url(claims)}`;
  return `${input}.${crypto.sign('RSA-SHA256', Buffer.from(input), privateKey).toString('base64url')}`;
}

describe('private_key_jwt at POST /oauth/token', () => {
  let sim;
  let dir;
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sim-assertion-'));
    const pub = path.join(dir, 'client.pub');
    fs.writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
    sim = await startSimulator(['--members', '3', '--repos', '3', '--client-id', CLIENT_ID, '--client-key-file', pub, '--client-key-id', 'key-2026']);
  });
  after(async () => {
    await sim.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function token(header, claims = {}) {
    const now = Math.floor(Date.now() / 1000);
    const jwt = assertion(privateKey, header, { iss: CLIENT_ID, sub: CLIENT_ID, aud: `${sim.url}/oauth/token`, iat: now, exp: now + 300, jti: crypto.randomUUID(), ...claims });
    const body = new URLSearchParams({ grant_type: 'client_credentials', client_id: CLIENT_ID, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: jwt }).toString();
    return request(`${sim.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  }

  test('an assertion naming the registered kid gets a token', async () => {
    const res = await token({ kid: 'key-2026' });
    assert.equal(res.status, 200, res.text);
    assert.match(res.json().access_token, /^sim_cc_/);
  });

  test('another kid, or none, is refused', async () => {
    for (const header of [{ kid: 'key-2025' }, {}]) {
      const res = await token(header);
      assert.equal(res.status, 401);
      assert.deepEqual(res.json(), { error: 'invalid_client', error_description: 'Client assertion kid does not name a registered key' });
    }
  });

  test('the audience must be the token URL', async () => {
    const res = await token({ kid: 'key-2026' }, { aud: 'https://elsewhere.example/token' });
    assert.equal(res.status, 401);
    assert.equal(res.json().error_description, 'Client assertion is not valid');
  });
});
