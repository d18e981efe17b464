'use strict';
// AWS for the simulator: an STS endpoint that answers AssumeRole, and one
// AWS-style API route that only accepts requests signed with the temporary
// keys STS handed out. Both verify Signature Version 4 (lib/sigv4.js) against
// keys configured on the command line or issued here, so a client passes only
// when it signs the way AWS checks.
//
//   POST /sts/            STS AssumeRole (form-encoded Action=AssumeRole&Version=2011-06-15&...),
//                         signed by the base keys (service sts)
//   GET|POST /aws/iam/users  a user listing (JSON), signed by temporary keys and their
//                         session token (service --aws-service, default iam)
//
// Temporary keys are recognizable on purpose, so that specs can assert they
// never leak: secret keys start with SIMTEMPSECRET and session tokens with
// SIMSESSIONTOKEN.

const crypto = require('node:crypto');
const sigv4 = require('../lib/sigv4');

const STS_NS = 'https://sts.amazonaws.com/doc/2011-06-15/';
const IAM_NS = 'https://iam.amazonaws.com/doc/2010-05-08/';
const CALLER_ACCOUNT = '999988887777';
const NAME_RE = /^[\w+=,.@-]+$/;
const EXTERNAL_ID_RE = /^[\w+=,.@:/-]{2,1224}$/;

const USERS = [
  { UserName: 'alice', UserId: 'AIDASIMALICE000000001', CreateDate: '2024-03-01T09:00:00Z', PasswordLastUsed: '2026-09-30T17:12:00Z' },
  { UserName: 'bob', UserId: 'AIDASIMBOB00000000002', CreateDate: '2024-05-17T14:30:00Z' },
  { UserName: 'ci-deploy', UserId: 'AIDASIMCIDEPLOY000003', CreateDate: '2025-01-08T08:00:00Z', Path: '/service/' },
];

// Element text, escaped as AWS escapes it (quotes stay as they are).
function xmlEscape(s) {
  return String(s).replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]);
}

function isoSeconds(ms) {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function base32(bytes, n) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let out = '';
  for (let i = 0; i < n; i++) out += alphabet[bytes[i] % 32];
  return out;
}

function response(status, contentType, text) {
  const body = Buffer.from(text);
  return { status, headers: ['content-type', contentType, 'content-length', String(body.length), 'x-amzn-requestid', crypto.randomUUID()], body };
}

function errorXml(ns, status, code, message) {
  const type = status >= 500 ? 'Receiver' : 'Sender';
  return response(
    status,
    'text/xml',
    `<ErrorResponse xmlns="${ns}">\n  <Error>\n    <Type>${type}</Type>\n    <Code>${xmlEscape(code)}</Code>\n    <Message>${xmlEscape(message)}</Message>\n  </Error>\n  <RequestId>${crypto.randomUUID()}</RequestId>\n</ErrorResponse>\n`,
  );
}

function createAwsProvider(opts) {
  const region = opts.awsRegion || 'us-east-1';
  const service = opts.awsService || 'iam';
  const maxSession = opts.stsMaxSessionDuration ?? 3600;
  const base = opts.stsAccessKeyId && opts.stsSecretAccessKey ? { secret: opts.stsSecretAccessKey, sessionToken: opts.stsSessionToken } : null;
  const sessions = new Map(); // temporary access key id -> {secret, sessionToken, expiresAt, arn}
  let counts;
  let last;

  function reset() {
    counts = { assume_role: 0, assume_role_refused: 0, api_calls: 0, api_refused: 0, refusals: {} };
    last = null;
  }
  reset();

  function refused(kind, r) {
    counts[kind]++;
    counts.refusals[r.code] = (counts.refusals[r.code] || 0) + 1;
    return r;
  }

  function validation(message) {
    return errorXml(STS_NS, 400, 'ValidationError', message);
  }

  function assumeRole(form, now) {
    const action = form.get('Action');
    const version = form.get('Version');
    if (action !== 'AssumeRole' || version !== '2011-06-15') {
      return errorXml(STS_NS, 400, 'InvalidAction', `Could not find operation ${action} for version ${version}`);
    }
    const roleArn = form.get('RoleArn');
    const sessionName = form.get('RoleSessionName');
    const durationText = form.get('DurationSeconds');
    const externalId = form.get('ExternalId');
    if (roleArn === null) return validation("1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null");
    if (sessionName === null) return validation("1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null");
    if (sessionName.length < 2 || sessionName.length > 64 || !NAME_RE.test(sessionName)) {
      return validation(`1 validation error detected: Value '${sessionName}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and length between 2 and 64`);
    }
    const duration = durationText === null ? 3600 : Number(durationText);
    if (!Number.isInteger(duration) || duration < 900 || duration > 43200) {
      return validation(`1 validation error detected: Value '${durationText}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200`);
    }
    if (externalId !== null && !EXTERNAL_ID_RE.test(externalId)) {
      return validation("1 validation error detected: Value at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:/-]* and length between 2 and 1224");
    }
    last = { role_arn: roleArn, session_name: sessionName, duration_seconds: duration, external_id_sent: externalId !== null };
    // The trust policy: this role only, and its sts:ExternalId condition when it has one.
    // AWS answers a wrong or missing ExternalId exactly as it answers an unknown role.
    if (roleArn !== opts.stsRoleArn || (opts.stsExternalId !== undefined && externalId !== opts.stsExternalId)) {
      return errorXml(STS_NS, 403, 'AccessDenied', `User: arn:aws:iam::${CALLER_ACCOUNT}:user/junction-sim is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`);
    }
    if (duration > maxSession) return validation('The requested DurationSeconds exceeds the MaxSessionDuration set for this role.');
    const ttl = opts.stsCredentialTtl ?? duration;
    const accessKeyId = `ASIA${base32(crypto.randomBytes(16), 16)}`;
    const secret = `SIMTEMPSECRET${crypto.randomBytes(21).toString('base64')}`;
    const sessionToken = `SIMSESSIONTOKEN${crypto.randomBytes(300).toString('base64')}`;
    // Whole seconds, so that the keys expire exactly at the Expiration shown.
    const expiresAt = Math.floor(now / 1000) * 1000 + ttl * 1000;
    const roleName = roleArn.slice(roleArn.lastIndexOf('/') + 1);
    const account = roleArn.split(':')[4];
    const arn = `arn:aws:sts::${account}:assumed-role/${roleName}/${sessionName}`;
    sessions.set(accessKeyId, { secret, sessionToken, expiresAt, arn });
    return response(
      200,
      'text/xml',
      `<AssumeRoleResponse xmlns="${STS_NS}">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROASIM${base32(crypto.randomBytes(13), 13)}:${xmlEscape(sessionName)}</AssumedRoleId>
      <Arn>${xmlEscape(arn)}</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>${accessKeyId}</AccessKeyId>
      <SecretAccessKey>${secret}</SecretAccessKey>
      <SessionToken>${sessionToken}</SessionToken>
      <Expiration>${isoSeconds(expiresAt)}</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>${crypto.randomUUID()}</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>
`,
    );
  }

  // 'sts' | 'api' | null
  function route(method, pathname) {
    if ((pathname === '/sts' || pathname === '/sts/') && method === 'POST') return 'sts';
    if (pathname === '/aws/iam/users' && (method === 'GET' || method === 'POST')) return 'api';
    return null;
  }

  // req: Node's request; body: Buffer
  function handle(kind, req, pathname, search, body) {
    const now = Date.now();
    const headers = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    const r = { method: req.method, path: pathname, query: search, headers, body };
    if (kind === 'sts') {
      const v = sigv4.verify(r, (id) => (base && id === opts.stsAccessKeyId ? base : null), { region, service: 'sts', now });
      if (!v.ok) {
        refused('assume_role_refused', v);
        return errorXml(STS_NS, v.status, v.code, v.message);
      }
      const out = assumeRole(new URLSearchParams(body.toString('utf8')), now);
      if (out.status === 200) counts.assume_role++;
      else refused('assume_role_refused', { code: /<Code>([^<]*)<\/Code>/.exec(out.body.toString())[1] });
      return out;
    }
    const v = sigv4.verify(r, (id) => sessions.get(id) || null, { region, service, now, requireSignedToken: true });
    if (!v.ok) {
      refused('api_refused', v);
      return errorXml(IAM_NS, v.status, v.code, v.message);
    }
    counts.api_calls++;
    const users = USERS.map((u) => ({ Path: '/', ...u, Arn: `arn:aws:iam::${opts.stsRoleArn ? opts.stsRoleArn.split(':')[4] : '111122223333'}:user${u.Path || '/'}${u.UserName}` }));
    return response(200, 'application/json', JSON.stringify({ Users: users, IsTruncated: false, Caller: v.key.arn }));
  }

  return {
    route,
    handle,
    exchangeStats: () => ({ assume_role: counts.assume_role, assume_role_refused: counts.assume_role_refused }),
    stats: () => ({ api_calls: counts.api_calls, api_refused: counts.api_refused, refusals: { ...counts.refusals }, sessions: sessions.size, last_assume_role: last }),
    reset,
    // Every temporary key issued so far stops working (403 InvalidClientTokenId).
    revoke() {
      const n = sessions.size;
      sessions.clear();
      return n;
    },
  };
}

module.exports = { createAwsProvider };
