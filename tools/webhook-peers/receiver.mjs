// A receiver of signed alert webhooks (the alerter's webhook sink) for
// spec/alerting_spec.lua: every POST is verified with the Standard Webhooks
// reference library, which shares no code with the signer under test, and
// recorded; GET /received returns what arrived.
//
//   node tools/webhook-peers/receiver.mjs <secret (whsec_...)>
//
// Prints `LISTENING <port>` once it accepts connections; exits when stdin
// closes (helpers.peer). GET /received answers
// { deliveries: [ { verified, error, id, body, headers } ] }.
import http from "node:http";
import { Webhook } from "standardwebhooks";

const secret = process.argv[2];
if (!secret) {
  console.error("receiver.mjs: the signing secret is required");
  process.exit(2);
}
const wh = new Webhook(secret);
const deliveries = [];

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    if (req.method === "GET" && req.url === "/received") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ deliveries }));
      return;
    }
    const body = Buffer.concat(chunks).toString("utf8");
    const entry = { id: req.headers["webhook-id"] ?? null, body, headers: req.headers };
    try {
      wh.verify(body, req.headers);
      entry.verified = true;
    } catch (e) {
      entry.verified = false;
      entry.error = String(e.message ?? e);
    }
    deliveries.push(entry);
    res.writeHead(entry.verified ? 204 : 400);
    res.end();
  });
});

server.listen(0, "127.0.0.1", () => {
  console.log(`LISTENING ${server.address().port}`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
