'use strict';
// Self-test for the simulator's AWS side: its Signature Version 4 verifier
// against AWS's published test suite, the STS AssumeRole endpoint and the
// API route that only temporary keys open. Run: node --test tools/simulator/test/

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startSimulator } = require('../lib/spawn');
const { request } = require('../lib/request');
const sigv4 = require('../lib/sigv4');

// Published vectors, outside the repository (see the project's vectors README).
const VECTORS = path.resolve(__dirname, '../../../../shared/vectors/aws-sigv4');

// A raw request as the test suite writes it: request line, headers (a line
// starting with whitespace continues the previous one), blank line, body.
function parseRaw(text) {
  const blank = text.indexOf('\n\n');
  const head = blank < 0 ? text : text.slice(0, blank);
  const body = blank < 0 ? '' : text.slice(blank + 2);
  const lines = head.split('\n');
  const first = lines.shift();
  const sp = first.indexOf(' ');
  const target = first.slice(sp + 1, first.lastIndexOf(' HTTP/'));
  const qi = target.indexOf('?');
  const headers = [];
  for (const line of lines) {
    if (/^[ \t]/.test(line) && headers.length) headers[headers.length - 1][1] += ` ${line.trim()}`;
    else {
      const c = line.indexOf(':');
      headers.push([line.slice(0, c), line.slice(c + 1)]);
    }
  }
  return { method: first.slice(0, sp), path: qi < 0 ? target : target.slice(0, qi), query: qi < 0 ? '' : target.slice(qi + 1), headers, body: Buffer.from(body) };
}

describe('SigV4 verifier against the AWS test suite', { skip: !fs.existsSync(VECTORS) && 'vectors not present' }, () => {
  const cases = fs.existsSync(VECTORS) ? fs.readdirSync(VECTORS).filter((d) => fs.existsSync(path.join(VECTORS, d, 'context.json'))) : [];

  test('the suite is there', () => assert.ok(cases.length >= 30, `${cases.length} cases`));

  for (const name of cases) {
    test(name, () => {
      const dir = path.join(VECTORS, name);
      const read = (f) => fs.readFileSync(path.join(dir, f), 'utf8');
      const ctx = JSON.parse(read('context.json'));
      const signed = parseRaw(read('header-signed-request.txt'));
      const now = Date.parse(ctx.timestamp);
      const keys = { secret: ctx.credentials.secret_access_key, sessionToken: ctx.credentials.token };
      const lookup = (id) => (id === ctx.credentials.access_key_id ? keys : null);
      const o = { region: ctx.region, service: ctx.service, now, normalize: ctx.normalize };

      const v = sigv4.verify(signed, lookup, o);
      assert.equal(v.ok, true, `${v.code}: ${v.message}`);
      assert.equal(v.canonical, read('header-canonical-request.txt'));
      assert.equal(v.stringToSign, read('header-string-to-sign.txt'));

      // One byte changed anywhere that is signed: refused.
      const mismatch = (r, lk = lookup, codes = ['SignatureDoesNotMatch']) => {
        const w = sigv4.verify(r, lk, o);
        assert.equal(w.ok, false);
        assert.ok(codes.includes(w.code), `${w.code}: ${w.message}`);
      };
      // A body under x-amz-content-sha256 fails that check first.
      const body = Buffer.from(signed.body);
      if (body.length) body[0] ^= 1;
      mismatch({ ...signed, body: body.length ? body : Buffer.from('x') }, lookup, ['SignatureDoesNotMatch', 'XAmzContentSHA256Mismatch']);
      mismatch(signed, (id) => (lookup(id) ? { ...keys, secret: `${keys.secret.slice(0, -1)}X` } : null));
      const date = signed.headers.map(([n, val]) => [n, n.toLowerCase() === 'x-amz-date' ? val.replace(/00Z$/, '01Z') : val]);
      mismatch({ ...signed, headers: date });
      const host = signed.headers.map(([n, val]) => [n, n.toLowerCase() === 'host' ? `x${val}` : val]);
      mismatch({ ...signed, headers: host });
    });
  }

  test('what a client signs with lib/sigv4 sign() verifies', () => {
    const now = Date.parse('2015-08-30T12:36:00Z');
    const c = { accessKeyId: 'AKIDEXAMPLE', secret: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken: 'tok', region: 'us-east-1', service: 'sts', now };
    const r = { method: 'POST', host: 'sts.example', path: '/', query: '', headers: [['Content-Type', 'application/x-www-form-urlencoded']], body: 'Action=AssumeRole' };
    const headers = [['Host', r.host], ...r.headers, ...sigv4.sign(r, c)];
    const v = sigv4.verify({ ...r, headers }, () => ({ secret: c.secret, sessionToken: 'tok' }), { region: 'us-east-1', service: 'sts', now, requireSignedToken: true });
    assert.equal(v.ok, true, v.message);
    assert.deepEqual(v.signedHeaders, ['content-type', 'host', 'x-amz-date', 'x-amz-security-token']);
  });
});

const BASE_ID = 'AKIASIMBASEKEY000001';
const BASE_SECRET = 'sim-base-secret/with+chars';
const ROLE = 'arn:aws:iam::111122223333:role/JunctionAudit';
const EXTERNAL_ID = 'acme-7f3c:tenant/1';

function form(params) {
  return Object.entries(params)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${sigv4.uriEncode(String(v))}`)
    .join('&');
}

// A signed request to the simulator. c: {accessKeyId, secret, sessionToken?, service, region?, now?}
function signedRequest(sim, method, pathname, body, c, extra = []) {
  const url = new URL(pathname, sim.url);
  const r = { method, host: url.host, path: url.pathname, query: url.search.slice(1), headers: extra, body: body ?? '' };
  const headers = {};
  for (const [n, v] of [...extra, ...sigv4.sign(r, { region: 'us-east-1', ...c })]) headers[n] = v;
  return request(url, { method, headers, body });
}

function assumeRole(sim, params = {}, keys = {}) {
  const body = form({ Action: 'AssumeRole', Version: '2011-06-15', RoleArn: ROLE, RoleSessionName: 'junction', DurationSeconds: 900, ExternalId: EXTERNAL_ID, ...params });
  return signedRequest(sim, 'POST', '/sts/', body, { accessKeyId: BASE_ID, secret: BASE_SECRET, service: 'sts', ...keys }, [['Content-Type', 'application/x-www-form-urlencoded; charset=utf-8']]);
}

function xmlText(xml, name) {
  const m = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  return m ? m[1] : undefined;
}

function temporaryKeys(res) {
  assert.equal(res.status, 200, res.text);
  return {
    accessKeyId: xmlText(res.text, 'AccessKeyId'),
    secret: xmlText(res.text, 'SecretAccessKey'),
    sessionToken: xmlText(res.text, 'SessionToken'),
    expiration: xmlText(res.text, 'Expiration'),
  };
}

function listUsers(sim, keys, overrides = {}) {
  return signedRequest(sim, 'GET', '/aws/iam/users', '', { ...keys, service: 'iam', ...overrides });
}

async function stats(sim) {
  return (await request(`${sim.url}/_sim/stats`)).json();
}

describe('STS AssumeRole and the AWS API route', () => {
  let sim;
  before(async () => {
    sim = await startSimulator(['--members', '3', '--repos', '3', '--sts-access-key-id', BASE_ID, '--sts-secret-access-key', BASE_SECRET, '--sts-role-arn', ROLE, '--sts-external-id', EXTERNAL_ID]);
  });
  after(() => sim.stop());

  test('AssumeRole answers AWS XML with temporary keys that open the API route', async () => {
    await request(`${sim.url}/_sim/reset`, { method: 'POST' });
    const before = Date.now();
    const res = await assumeRole(sim);
    assert.match(res.headers['content-type'], /^text\/xml/);
    assert.match(res.text, /^<AssumeRoleResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/">/);
    const keys = temporaryKeys(res);
    assert.match(keys.accessKeyId, /^ASIA[A-Z2-7]{16}$/);
    assert.match(keys.secret, /^SIMTEMPSECRET[A-Za-z0-9+/=]+$/);
    assert.match(keys.sessionToken, /^SIMSESSIONTOKEN[A-Za-z0-9+/=]+$/);
    assert.match(keys.expiration, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    // DurationSeconds=900: the keys expire 900 s after the call, to the second.
    const expires = Date.parse(keys.expiration);
    assert.ok(expires >= Math.floor(before / 1000) * 1000 + 900e3 && expires <= Date.now() + 900e3, keys.expiration);
    assert.equal(xmlText(res.text, 'Arn'), 'arn:aws:sts::111122223333:assumed-role/JunctionAudit/junction');

    const users = await listUsers(sim, keys);
    assert.equal(users.status, 200, users.text);
    const body = users.json();
    assert.deepEqual(body.Users.map((u) => u.UserName), ['alice', 'bob', 'ci-deploy']);
    assert.equal(body.Caller, 'arn:aws:sts::111122223333:assumed-role/JunctionAudit/junction');
    // POST with a signed body works too.
    const post = await signedRequest(sim, 'POST', '/aws/iam/users', '{"MaxItems":10}', { ...keys, service: 'iam' }, [['Content-Type', 'application/json']]);
    assert.equal(post.status, 200, post.text);

    const s = await stats(sim);
    assert.equal(s.exchanges.assume_role, 1);
    assert.equal(s.exchanges.assume_role_refused, 0);
    assert.equal(s.aws.api_calls, 2);
    assert.deepEqual(s.aws.last_assume_role, { role_arn: ROLE, session_name: 'junction', duration_seconds: 900, external_id_sent: true });
  });

  test('STS refuses what AWS refuses, in AWS words', async () => {
    await request(`${sim.url}/_sim/reset`, { method: 'POST' });
    const expectError = async (resPromise, status, code, message) => {
      const res = await resPromise;
      assert.equal(res.status, status, res.text);
      assert.match(res.text, /^<ErrorResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/">/);
      assert.equal(xmlText(res.text, 'Code'), code);
      if (message) assert.match(xmlText(res.text, 'Message'), message);
      assert.doesNotMatch(res.text, /SIMTEMPSECRET|SIMSESSIONTOKEN|sim-base-secret/);
    };
    const denied = /^User: arn:aws:iam::999988887777:user\/junction-sim is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::111122223333:role\/JunctionAudit$/;
    await expectError(assumeRole(sim, { ExternalId: 'acme-wrong' }), 403, 'AccessDenied', denied);
    await expectError(assumeRole(sim, { ExternalId: undefined }), 403, 'AccessDenied', denied);
    await expectError(assumeRole(sim, { RoleArn: 'arn:aws:iam::111122223333:role/Other' }), 403, 'AccessDenied', /role\/Other$/);
    await expectError(assumeRole(sim, { DurationSeconds: 899 }), 400, 'ValidationError', /durationSeconds/);
    await expectError(assumeRole(sim, { DurationSeconds: 7200 }), 400, 'ValidationError', /exceeds the MaxSessionDuration/);
    await expectError(assumeRole(sim, { RoleSessionName: 'a b' }), 400, 'ValidationError', /roleSessionName/);
    await expectError(assumeRole(sim, { RoleSessionName: undefined }), 400, 'ValidationError', /Member must not be null/);
    await expectError(assumeRole(sim, { Action: 'GetSessionToken' }), 400, 'InvalidAction');
    await expectError(assumeRole(sim, {}, { secret: 'wrong' }), 403, 'SignatureDoesNotMatch', /does not match the signature you provided/);
    await expectError(assumeRole(sim, {}, { accessKeyId: 'AKIAUNKNOWN000000000' }), 403, 'InvalidClientTokenId');
    await expectError(assumeRole(sim, {}, { service: 'iam' }), 403, 'SignatureDoesNotMatch', /correct service: 'sts'/);
    await expectError(assumeRole(sim, {}, { region: 'eu-west-1' }), 403, 'SignatureDoesNotMatch', /valid region, not 'eu-west-1'/);
    await expectError(assumeRole(sim, {}, { now: Date.now() - 20 * 60 * 1000 }), 403, 'SignatureDoesNotMatch', /^Signature expired/);
    await expectError(assumeRole(sim, {}, { sessionToken: 'unexpected' }), 403, 'InvalidClientTokenId');
    const unsigned = await request(`${sim.url}/sts/`, { method: 'POST', body: form({ Action: 'AssumeRole' }) });
    assert.equal(unsigned.status, 403);
    assert.equal(xmlText(unsigned.text, 'Code'), 'MissingAuthenticationToken');
    const s = await stats(sim);
    assert.equal(s.exchanges.assume_role, 0);
    assert.equal(s.exchanges.assume_role_refused, 15);
    assert.equal(s.aws.refusals.AccessDenied, 3);
  });

  test('the API route refuses anything but a correct signature with live temporary keys', async () => {
    const keys = temporaryKeys(await assumeRole(sim));
    const expectRefusal = async (resPromise, status, code) => {
      const res = await resPromise;
      assert.equal(res.status, status, res.text);
      assert.match(res.text, /^<ErrorResponse xmlns="https:\/\/iam\.amazonaws\.com\/doc\/2010-05-08\/">/);
      assert.equal(xmlText(res.text, 'Code'), code);
    };
    await expectRefusal(listUsers(sim, keys, { sessionToken: undefined }), 403, 'InvalidClientTokenId');
    await expectRefusal(listUsers(sim, keys, { sessionToken: `${keys.sessionToken}x` }), 403, 'InvalidClientTokenId');
    await expectRefusal(listUsers(sim, keys, { secret: `${keys.secret}x` }), 403, 'SignatureDoesNotMatch');
    await expectRefusal(listUsers(sim, keys, { service: 'ec2' }), 403, 'SignatureDoesNotMatch');
    await expectRefusal(listUsers(sim, { accessKeyId: BASE_ID, secret: BASE_SECRET }), 403, 'InvalidClientTokenId');
    // The session token must be signed, not only sent.
    const url = new URL('/aws/iam/users', sim.url);
    const r = { method: 'GET', host: url.host, path: url.pathname, query: '', headers: [], body: '' };
    const headers = Object.fromEntries(sigv4.sign(r, { ...keys, sessionToken: undefined, service: 'iam', region: 'us-east-1' }));
    headers['X-Amz-Security-Token'] = keys.sessionToken;
    await expectRefusal(request(url, { headers }), 400, 'IncompleteSignature');
    // A body changed after signing.
    const u2 = new URL('/aws/iam/users', sim.url);
    const r2 = { method: 'POST', host: u2.host, path: u2.pathname, query: '', headers: [], body: 'a' };
    const h2 = Object.fromEntries(sigv4.sign(r2, { ...keys, service: 'iam', region: 'us-east-1' }));
    await expectRefusal(request(u2, { method: 'POST', headers: h2, body: 'b' }), 403, 'SignatureDoesNotMatch');
    // Revoked sessions stop working.
    assert.equal((await listUsers(sim, keys)).status, 200);
    await request(`${sim.url}/_sim/revoke_exchanged`, { method: 'POST' });
    await expectRefusal(listUsers(sim, keys), 403, 'InvalidClientTokenId');
  });

  test('statistics reset', async () => {
    await request(`${sim.url}/_sim/reset`, { method: 'POST' });
    const s = await stats(sim);
    assert.equal(s.exchanges.assume_role, 0);
    assert.equal(s.aws.api_calls, 0);
    assert.equal(s.aws.last_assume_role, null);
  });
});

describe('temporary keys expire', () => {
  let sim;
  before(async () => {
    sim = await startSimulator(['--members', '3', '--repos', '3', '--sts-access-key-id', BASE_ID, '--sts-secret-access-key', BASE_SECRET, '--sts-role-arn', ROLE, '--sts-credential-ttl', '1']);
  });
  after(() => sim.stop());

  test('--sts-credential-ttl shortens their life; then the API answers ExpiredToken', async () => {
    const keys = temporaryKeys(await assumeRole(sim, { ExternalId: undefined }));
    const expires = Date.parse(keys.expiration);
    await new Promise((r) => setTimeout(r, Math.max(0, expires - Date.now()) + 50));
    const res = await listUsers(sim, keys);
    assert.equal(res.status, 403);
    assert.equal(xmlText(res.text, 'Code'), 'ExpiredToken');
    assert.equal(xmlText(res.text, 'Message'), 'The security token included in the request is expired');
  });

  test('an ExternalId is accepted when the role does not require one', async () => {
    assert.equal((await assumeRole(sim, { ExternalId: 'anything-goes' })).status, 200);
  });
});

describe('option checks', () => {
  test('base keys come in pairs', async () => {
    await assert.rejects(startSimulator(['--sts-access-key-id', BASE_ID]), /exited with code 2/);
  });
});
