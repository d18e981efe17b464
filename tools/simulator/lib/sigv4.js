'use strict';
// AWS Signature Version 4, header form, as a service checks it: rebuild the
// canonical request from what arrived, derive the signing key from the
// secret the access key id names, and compare signatures. Written from AWS's
// specification with node:crypto only, independently of Junction's signer, so
// that a spec driving Junction against the simulator proves the signature
// really verifies. test/aws.test.js checks it against AWS's published
// Signature Version 4 test suite.

const crypto = require('node:crypto');

const ALGORITHM = 'AWS4-HMAC-SHA256';
const MAX_SKEW_MS = 15 * 60 * 1000; // AWS refuses a signature 15 minutes off its clock

// RFC 3986 percent-encoding of every byte but the unreserved characters.
function uriEncode(s) {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-._~]/.test(c)) out += c;
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

// Percent-decoding that leaves malformed escapes as they are ('+' stays '+').
function uriDecode(s) {
  const bytes = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x25 && i + 2 < raw.length && /^[0-9A-Fa-f]{2}$/.test(raw.slice(i + 1, i + 3).toString())) {
      bytes.push(parseInt(raw.slice(i + 1, i + 3).toString(), 16));
      i += 2;
    } else {
      bytes.push(raw[i]);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

// The path as it appeared on the request line. With `normalize` (every
// service but S3): dot segments removed and empty segments dropped (RFC 3986
// section 5.2.4), then each segment encoded once more, so "%20" becomes "%2520".
function canonicalPath(rawPath, normalize = true) {
  const path = rawPath || '/';
  if (!normalize) return path.split('/').map(uriEncode).join('/');
  const trailing = path.endsWith('/');
  const out = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(uriEncode(seg));
  }
  let joined = `/${out.join('/')}`;
  if (trailing && out.length) joined += '/';
  return joined;
}

// Parameters decoded then encoded per RFC 3986, sorted by name, then value.
function canonicalQuery(rawQuery) {
  if (!rawQuery) return '';
  const pairs = rawQuery
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      const name = eq < 0 ? p : p.slice(0, eq);
      const value = eq < 0 ? '' : p.slice(eq + 1);
      return [uriEncode(uriDecode(name)), uriEncode(uriDecode(value))];
    });
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([n, v]) => `${n}=${v}`).join('&');
}

// headers: [[name, value], ...] as received, repeats allowed. Values trimmed,
// runs of whitespace collapsed, repeats joined with ',' in arrival order.
function headerValues(headers) {
  const map = new Map();
  for (const [name, value] of headers) {
    const k = name.toLowerCase();
    const v = String(value).trim().replace(/\s+/g, ' ');
    map.set(k, map.has(k) ? `${map.get(k)},${v}` : v);
  }
  return map;
}

function sha256Hex(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

function hmac(key, data) {
  return crypto.createHmac('sha256', key).update(data, 'utf8').digest();
}

function signingKey(secret, date, region, service) {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
}

// r: {method, path, query, headers: [[name, value]], body: Buffer|string}
function canonicalRequest(r, signedHeaders, payloadHash, normalize = true) {
  const values = headerValues(r.headers);
  const lines = signedHeaders.map((h) => `${h}:${values.has(h) ? values.get(h) : ''}\n`).join('');
  return [r.method, canonicalPath(r.path, normalize), canonicalQuery(r.query), lines, signedHeaders.join(';'), payloadHash].join('\n');
}

function stringToSign(amzDate, scope, canonical) {
  return [ALGORITHM, amzDate, scope, sha256Hex(canonical)].join('\n');
}

// "20150830T123600Z" -> ms, or NaN.
function parseAmzDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '');
  if (!m) return NaN;
  const t = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
  const d = new Date(t);
  return d.getUTCDate() === +m[3] && d.getUTCHours() === +m[4] ? t : NaN;
}

function formatAmzDate(ms) {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

function refuse(status, code, message) {
  return { ok: false, status, code, message };
}

const MISMATCH =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';
const INVALID_TOKEN = 'The security token included in the request is invalid.';

// Verifies the request's Authorization header.
//   r: {method, path, query, headers: [[name, value]], body}
//   lookup(accessKeyId) -> {secret, sessionToken?, expiresAt? (ms)} or null
//   o: {region, service, now (ms), normalize = true, requireSignedToken = false}
// Returns {ok: true, accessKeyId, key, signedHeaders, canonical, stringToSign}
// or {ok: false, status, code, message} in AWS's words.
function verify(r, lookup, o) {
  const values = headerValues(r.headers);
  const auth = values.get('authorization');
  if (auth === undefined) return refuse(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
  const m = /^AWS4-HMAC-SHA256 (.*)$/.exec(auth);
  if (!m) return refuse(400, 'IncompleteSignature', `Authorization header requires the ${ALGORITHM} algorithm.`);
  const parts = {};
  for (const p of m[1].split(',')) {
    const kv = /^\s*(\w+)=(.*?)\s*$/.exec(p);
    if (!kv || kv[1] in parts) return refuse(400, 'IncompleteSignature', 'Authorization header is malformed.');
    parts[kv[1]] = kv[2];
  }
  for (const need of ['Credential', 'SignedHeaders', 'Signature']) {
    if (!parts[need]) return refuse(400, 'IncompleteSignature', `Authorization header requires '${need}' parameter.`);
  }
  const cred = parts.Credential.split('/');
  if (cred.length !== 5 || cred[4] !== 'aws4_request') return refuse(400, 'IncompleteSignature', 'Credential is malformed: expected "<key id>/<date>/<region>/<service>/aws4_request".');
  const [accessKeyId, date, region, service] = cred;
  const amzDate = values.get('x-amz-date');
  const t = parseAmzDate(amzDate);
  if (Number.isNaN(t)) return refuse(400, 'IncompleteSignature', 'X-Amz-Date is missing or not of the form YYYYMMDDTHHMMSSZ.');
  if (date !== amzDate.slice(0, 8)) return refuse(403, 'SignatureDoesNotMatch', `Credential should be scoped to a valid date: '${amzDate.slice(0, 8)}'.`);
  if (region !== o.region) return refuse(403, 'SignatureDoesNotMatch', `Credential should be scoped to a valid region, not '${region}'.`);
  if (service !== o.service) return refuse(403, 'SignatureDoesNotMatch', `Credential should be scoped to correct service: '${o.service}'.`);
  const now = o.now ?? Date.now();
  if (t < now - MAX_SKEW_MS) return refuse(403, 'SignatureDoesNotMatch', `Signature expired: ${amzDate} is now earlier than ${formatAmzDate(now - MAX_SKEW_MS)} (${formatAmzDate(now)} - 15 min.)`);
  if (t > now + MAX_SKEW_MS) return refuse(403, 'SignatureDoesNotMatch', `Signature not yet current: ${amzDate} is still later than ${formatAmzDate(now + MAX_SKEW_MS)} (${formatAmzDate(now)} + 15 min.)`);
  const signedHeaders = parts.SignedHeaders.split(';');
  const sorted = [...signedHeaders].sort();
  if (signedHeaders.some((h, i) => h !== sorted[i] || h !== h.toLowerCase() || h === '' || (i > 0 && h === signedHeaders[i - 1]))) {
    return refuse(400, 'IncompleteSignature', 'SignedHeaders must be lower-case, sorted and unique.');
  }
  if (!signedHeaders.includes('host')) return refuse(400, 'IncompleteSignature', "'Host' must be a signed header.");
  if (!signedHeaders.includes('x-amz-date')) return refuse(400, 'IncompleteSignature', "'X-Amz-Date' must be a signed header.");
  for (const h of signedHeaders) {
    if (!values.has(h)) return refuse(400, 'IncompleteSignature', `Signed header '${h}' is not in the request.`);
  }
  const key = lookup(accessKeyId);
  if (!key) return refuse(403, 'InvalidClientTokenId', INVALID_TOKEN);
  const token = values.get('x-amz-security-token');
  if ((key.sessionToken || token !== undefined) && token !== key.sessionToken) return refuse(403, 'InvalidClientTokenId', INVALID_TOKEN);
  if (key.sessionToken && o.requireSignedToken && !signedHeaders.includes('x-amz-security-token')) {
    return refuse(400, 'IncompleteSignature', "'X-Amz-Security-Token' must be a signed header.");
  }
  if (key.expiresAt !== undefined && now >= key.expiresAt) return refuse(403, 'ExpiredToken', 'The security token included in the request is expired');
  const payloadHash = sha256Hex(r.body ?? '');
  const declared = values.get('x-amz-content-sha256');
  if (declared !== undefined && declared !== payloadHash) return refuse(400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
  const canonical = canonicalRequest(r, signedHeaders, payloadHash, o.normalize ?? true);
  const scope = `${date}/${region}/${service}/aws4_request`;
  const sts = stringToSign(amzDate, scope, canonical);
  const expected = crypto.createHmac('sha256', signingKey(key.secret, date, region, service)).update(sts, 'utf8').digest();
  const given = /^[0-9a-f]{64}$/.test(parts.Signature) ? Buffer.from(parts.Signature, 'hex') : Buffer.alloc(32);
  if (!crypto.timingSafeEqual(expected, given)) return refuse(403, 'SignatureDoesNotMatch', MISMATCH);
  return { ok: true, accessKeyId, key, signedHeaders, canonical, stringToSign: sts };
}

// Signs a request (for tests and harnesses that talk to the simulator):
// returns the headers to add (X-Amz-Date, X-Amz-Security-Token, Authorization).
// Every header given is signed, plus host (from r.host) and the added ones.
function sign(r, c) {
  const amzDate = formatAmzDate(c.now ?? Date.now());
  const date = amzDate.slice(0, 8);
  const add = [['X-Amz-Date', amzDate]];
  if (c.sessionToken) add.push(['X-Amz-Security-Token', c.sessionToken]);
  const headers = [['Host', r.host], ...r.headers, ...add];
  const signedHeaders = [...new Set(headers.map(([n]) => n.toLowerCase()))].sort();
  const canonical = canonicalRequest({ ...r, headers }, signedHeaders, sha256Hex(r.body ?? ''));
  const scope = `${date}/${c.region}/${c.service}/aws4_request`;
  const signature = crypto.createHmac('sha256', signingKey(c.secret, date, c.region, c.service)).update(stringToSign(amzDate, scope, canonical), 'utf8').digest('hex');
  add.push(['Authorization', `${ALGORITHM} Credential=${c.accessKeyId}/${scope}, SignedHeaders=${signedHeaders.join(';')}, Signature=${signature}`]);
  return add;
}

module.exports = { verify, sign, canonicalRequest, canonicalPath, canonicalQuery, stringToSign, signingKey, sha256Hex, formatAmzDate, parseAmzDate, uriEncode };
