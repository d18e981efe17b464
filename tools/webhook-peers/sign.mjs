// Webhook deliveries signed by the providers' own libraries, for the
// verification tests (spec/webhook_peers_spec.lua): GitHub's
// @octokit/webhooks-methods, the Standard Webhooks reference library, and
// jose for Google Pub/Sub-style OIDC push tokens (RS256). The verifier under
// test shares no code with these.
//
//   node tools/webhook-peers/sign.mjs '<config JSON>'
//
// config: { now_ms, github_secret, github_old_secret, swh_secret,
//           swh_old_secret, audience, email }
// Prints one JSON document: { cases: [ { name, scheme, request, secrets,
// expect } ], jwks }. `expect` is "accepted" or the reason code the
// verifier must answer; requests are { method, headers: [[name, value]],
// body, now_ms }.
import { sign as githubSign } from "@octokit/webhooks-methods";
import { Webhook } from "standardwebhooks";
import { SignJWT, exportJWK, generateKeyPair } from "jose";

const config = JSON.parse(process.argv[2] ?? "{}");
for (const key of ["now_ms", "github_secret", "swh_secret", "swh_old_secret", "audience"]) {
  if (config[key] === undefined) {
    console.error(`sign.mjs: config.${key} is required`);
    process.exit(2);
  }
}
const now = config.now_ms;
const nowS = Math.floor(now / 1000);
const cases = [];

function request(headers, body, extra = {}) {
  return { method: "POST", headers, body, now_ms: now, ...extra };
}

// GitHub: X-Hub-Signature-256 from the library, over the raw body as sent.
const ghBody = JSON.stringify({
  action: "opened",
  issue: { number: 1347, title: "Found a bug", body: "I'm having a problem with this. \u00e9\u2713" },
  repository: { full_name: "octocat/Hello-World" },
});
const ghSig = await githubSign(config.github_secret, ghBody);
const ghHeaders = [
  ["X-Hub-Signature-256", ghSig],
  ["X-GitHub-Event", "issues"],
  ["X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"],
];
cases.push({
  name: "github: signed by @octokit/webhooks-methods",
  scheme: "github",
  request: request(ghHeaders, ghBody),
  secrets: [config.github_secret],
  expect: "accepted",
  delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
  event_type: "issues",
});
cases.push({
  name: "github: the old secret still configured next to the new one",
  scheme: "github",
  request: request(ghHeaders, ghBody),
  secrets: [config.github_old_secret, config.github_secret],
  expect: "accepted",
  secret_index: 1,
});
cases.push({
  name: "github: signed with another secret",
  scheme: "github",
  request: request(
    [["X-Hub-Signature-256", await githubSign(config.github_secret + "x", ghBody)]],
    ghBody,
  ),
  secrets: [config.github_secret],
  expect: "signature_mismatch",
});
cases.push({
  name: "github: body re-serialised after signing",
  scheme: "github",
  request: request(ghHeaders, JSON.stringify(JSON.parse(ghBody), null, 1)),
  secrets: [config.github_secret],
  expect: "signature_mismatch",
});

// Standard Webhooks: the reference library signs; a rotation sends both.
const swhBody = JSON.stringify({ type: "user.created", data: { id: "u_1", email: "a@example.com" } });
const msgId = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
const at = new Date(nowS * 1000);
const swhNew = new Webhook(config.swh_secret);
const swhOld = new Webhook(config.swh_old_secret);
const sigNew = swhNew.sign(msgId, at, swhBody);
const sigOld = swhOld.sign(msgId, at, swhBody);
const swhHeaders = (sig, ts = String(nowS)) => [
  ["webhook-id", msgId],
  ["webhook-timestamp", ts],
  ["webhook-signature", sig],
];
cases.push({
  name: "standard webhooks: signed by standardwebhooks",
  scheme: "standard_webhooks",
  request: request(swhHeaders(sigNew), swhBody),
  secrets: [config.swh_secret],
  expect: "accepted",
  delivery_id: msgId,
  event_type: "user.created",
});
cases.push({
  name: "standard webhooks: rotation, both signatures, receiver on the old key",
  scheme: "standard_webhooks",
  request: request(swhHeaders(`${sigNew} ${sigOld}`), swhBody),
  secrets: [config.swh_old_secret],
  expect: "accepted",
});
cases.push({
  name: "standard webhooks: only the old signature, receiver on the new key",
  scheme: "standard_webhooks",
  request: request(swhHeaders(sigOld), swhBody),
  secrets: [config.swh_secret],
  expect: "signature_mismatch",
});
const stale = new Date((nowS - 600) * 1000);
cases.push({
  name: "standard webhooks: authentic, ten minutes old",
  scheme: "standard_webhooks",
  request: request(swhHeaders(swhNew.sign(msgId, stale, swhBody), String(nowS - 600)), swhBody),
  secrets: [config.swh_secret],
  expect: "stale_timestamp",
});
// Google Pub/Sub push: an OIDC token signed with jose, keys published as a
// JWK Set (the shape of Google's certificate endpoint).
const { privateKey, publicKey } = await generateKeyPair("RS256", { modulusLength: 2048 });
const other = await generateKeyPair("RS256", { modulusLength: 2048 });
const jwk = { ...(await exportJWK(publicKey)), kid: "peer-key-1", alg: "RS256", use: "sig" };
const jwks = { keys: [jwk] };
const pubsubBody = JSON.stringify({
  message: { data: "SGVsbG8gQ2xvdWQgUHViL1N1YiE=", messageId: "2070443601311540", publishTime: "2021-02-26T19:13:55.749Z" },
  subscription: "projects/acme/subscriptions/push",
});
async function token(claims, key = privateKey, kid = "peer-key-1") {
  return new SignJWT({ email: config.email, email_verified: true, ...claims })
    .setProtectedHeader({ alg: "RS256", kid, typ: "JWT" })
    .setIssuer(claims.iss ?? "https://accounts.google.com")
    .setAudience(claims.aud ?? config.audience)
    .setIssuedAt(claims.iat ?? nowS)
    .setExpirationTime(claims.exp ?? nowS + 3600)
    .sign(key);
}
const bearer = (t) => [["Authorization", `Bearer ${t}`]];
cases.push({
  name: "pubsub: OIDC token signed by jose",
  scheme: "google_pubsub",
  request: request(bearer(await token({})), pubsubBody),
  expect: "accepted",
  delivery_id: "2070443601311540",
  email: config.email,
});
cases.push({
  name: "pubsub: another audience",
  scheme: "google_pubsub",
  request: request(bearer(await token({ aud: "https://elsewhere.example.com/push" })), pubsubBody),
  expect: "jwt_wrong_audience",
});
cases.push({
  name: "pubsub: expired two minutes ago",
  scheme: "google_pubsub",
  request: request(bearer(await token({ iat: nowS - 3720, exp: nowS - 120 })), pubsubBody),
  expect: "jwt_expired",
});
cases.push({
  name: "pubsub: signed by a key that is not in the set, same kid",
  scheme: "google_pubsub",
  request: request(bearer(await token({}, other.privateKey)), pubsubBody),
  expect: "jwt_signature_mismatch",
});
cases.push({
  name: "pubsub: another service account",
  scheme: "google_pubsub",
  request: request(bearer(await token({ email: "intruder@evil.iam.gserviceaccount.com" })), pubsubBody),
  expect: "jwt_wrong_email",
  email: config.email,
});

process.stdout.write(JSON.stringify({ cases, jwks }) + "\n");
