#!/usr/bin/env node
'use strict';
// Node.js peer for the connector-concurrency benchmark.
//
//   node tools/bench/concurrency_node.js --url http://127.0.0.1:PORT --token sim-token \
//        --jobs 10000 --concurrency 10000 --org acme --pages N --per-page P
//
// Runs --jobs connector "jobs", at most --concurrency at a time. Each job is a
// small connector script executed in its own node:vm context (a fresh
// vm.createContext per job, the way sandboxed-script integration runtimes run
// customer scripts). The script gets an injected async HTTP helper and pages
// through GET /orgs/{org}/members?per_page=P, following Link rel="next" for up
// to N pages, parsing each page and counting the items.
//
// Start the simulator with a budget large enough for jobs x pages requests,
// e.g. `node tools/simulator/server.js --rate-limit 1000000000`; otherwise the
// jobs hit the primary rate limit (403) and are counted as errors.
//
// Output: one JSON line on stdout:
//   {"runtime":"node","jobs":..,"seconds":..,"jobs_per_s":..,"peak_rss_bytes":..,
//    "rss_per_job_bytes":..,"errors":.., ...details}
// - seconds: wall time from the first job start to the last job end.
// - peak_rss_bytes: max of process.memoryUsage.rss() sampled every 50 ms and
//   VmHWM from /proc/self/status read at the end.
// - rss_per_job_bytes: (peak_rss_bytes - baseline RSS before the first job)
//   divided by the number of jobs that can be alive at once (min(jobs, concurrency)).
//
// HTTP client choice: Node 20's global fetch is undici, whose connection pool
// can only be tuned through the undici package (not a built-in), and its
// default pool opens one connection per concurrent request (10,000 sockets for
// 10,000 concurrent jobs). The default client here is therefore node:http with
// a keep-alive http.Agent capped at --max-sockets (256) connections, which
// queues requests beyond that. `--client fetch` runs the same jobs over global
// fetch for comparison.

const http = require('node:http');
const fs = require('node:fs');
const vm = require('node:vm');
const { performance } = require('node:perf_hooks');

const USAGE = `usage: node tools/bench/concurrency_node.js --url URL [--token T] [--jobs N] [--concurrency N]
       [--org NAME] [--pages N] [--per-page P] [--client http|fetch] [--max-sockets N]
       [--timeout-ms N] [--warmup N]`;

function parseArgs(argv) {
  const o = {
    url: null,
    token: 'sim-token',
    jobs: 10000,
    concurrency: 10000,
    org: 'acme',
    pages: 1,
    perPage: 100,
    client: 'http',
    maxSockets: 256,
    timeoutMs: 120000,
    warmup: 0,
  };
  const ints = { '--jobs': 'jobs', '--concurrency': 'concurrency', '--pages': 'pages', '--per-page': 'perPage', '--max-sockets': 'maxSockets', '--timeout-ms': 'timeoutMs', '--warmup': 'warmup' };
  const strs = { '--url': 'url', '--token': 'token', '--org': 'org', '--client': 'client' };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      v = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    if (a === '--help' || a === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    if (!(a in ints) && !(a in strs)) die(`unknown argument ${a}`);
    if (v === undefined) {
      if (i + 1 >= argv.length) die(`${a} needs a value`);
      v = argv[++i];
    }
    if (a in ints) {
      if (!/^\d+$/.test(v)) die(`${a} expects a non-negative integer`);
      o[ints[a]] = parseInt(v, 10);
    } else {
      o[strs[a]] = v;
    }
  }
  if (!o.url) die('--url is required');
  o.url = o.url.replace(/\/+$/, '');
  if (!/^http:\/\//.test(o.url)) die('--url must be an http:// URL');
  if (o.jobs < 1 || o.concurrency < 1 || o.pages < 1 || o.perPage < 1 || o.maxSockets < 1) die('counts must be >= 1');
  if (o.client !== 'http' && o.client !== 'fetch') die('--client must be http or fetch');
  return o;
}

function die(msg) {
  process.stderr.write(`concurrency_node: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

// The connector script. It only sees `params` and `api`; JSON parsing and Link
// parsing happen inside the sandbox, as they would in a real connector.
const CONNECTOR_SOURCE = `
(async () => {
  function nextLink(header) {
    if (!header) return null;
    for (const part of header.split(',')) {
      const m = /<([^>]*)>\\s*;\\s*rel="next"/.exec(part);
      if (m) return m[1];
    }
    return null;
  }
  let url = params.baseUrl + '/orgs/' + encodeURIComponent(params.org) + '/members?per_page=' + params.perPage;
  let pages = 0;
  let items = 0;
  while (url && pages < params.maxPages) {
    const res = await api.get(url);
    if (res.status !== 200) throw new Error('GET ' + url + ' -> HTTP ' + res.status);
    const page = JSON.parse(res.body);
    if (!Array.isArray(page)) throw new Error('expected a JSON array');
    for (const member of page) if (typeof member.login === 'string') items++;
    pages++;
    url = nextLink(res.link);
  }
  return { pages, items };
})()
`;

function makeHttpGet(o) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.maxSockets, maxFreeSockets: o.maxSockets, scheduling: 'lifo' });
  const headers = { authorization: `Bearer ${o.token}`, accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' };
  const get = (url) =>
    new Promise((resolve, reject) => {
      const req = http.get(url, { agent, headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          if (!res.complete) return reject(new Error('incomplete response'));
          resolve({ status: res.statusCode, link: res.headers.link || null, body: Buffer.concat(chunks).toString('utf8') });
        });
      });
      req.setTimeout(o.timeoutMs, () => req.destroy(new Error('request timeout')));
      req.on('error', reject);
    });
  return { get, close: () => agent.destroy() };
}

function makeFetchGet(o) {
  const headers = { authorization: `Bearer ${o.token}`, accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' };
  const get = async (url) => {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(o.timeoutMs) });
    return { status: res.status, link: res.headers.get('link'), body: await res.text() };
  };
  return { get, close: () => {} };
}

function vmHwmBytes() {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? parseInt(m[1], 10) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const client = o.client === 'fetch' ? makeFetchGet(o) : makeHttpGet(o);
  const script = new vm.Script(CONNECTOR_SOURCE, { filename: 'connector.js' });
  const params = Object.freeze({ baseUrl: o.url, org: o.org, perPage: o.perPage, maxPages: o.pages });

  let pagesTotal = 0;
  let itemsTotal = 0;
  let errors = 0;
  const errorSamples = [];

  async function runJob() {
    // A fresh context per job: its own global object and built-ins.
    const context = vm.createContext({ params, api: { get: client.get } });
    const result = await script.runInContext(context);
    return { pages: result.pages, items: result.items };
  }

  async function pool(count, width, record) {
    let started = 0;
    const worker = async () => {
      while (started < count) {
        started++;
        try {
          const r = await runJob();
          if (record) {
            pagesTotal += r.pages;
            itemsTotal += r.items;
          }
        } catch (e) {
          if (record) {
            errors++;
            if (errorSamples.length < 5) errorSamples.push(String(e && e.message ? e.message : e));
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(width, count) }, worker));
  }

  if (o.warmup > 0) await pool(o.warmup, Math.min(o.warmup, o.concurrency), false);
  if (global.gc) global.gc();

  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const sampler = setInterval(() => {
    const rss = process.memoryUsage.rss();
    if (rss > peak) peak = rss;
  }, 50);

  const t0 = performance.now();
  await pool(o.jobs, o.concurrency, true);
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const last = process.memoryUsage.rss();
  if (last > peak) peak = last;
  const hwm = vmHwmBytes();
  const peakRss = Math.max(peak, hwm);
  client.close();

  for (const e of errorSamples) process.stderr.write(`concurrency_node: job error: ${e}\n`);
  const live = Math.min(o.jobs, o.concurrency);
  const out = {
    runtime: 'node',
    jobs: o.jobs,
    seconds: Number(seconds.toFixed(3)),
    jobs_per_s: Number((o.jobs / seconds).toFixed(1)),
    peak_rss_bytes: peakRss,
    rss_per_job_bytes: Math.max(0, Math.round((peakRss - baseline) / live)),
    errors,
    concurrency: o.concurrency,
    pages_per_job: o.pages,
    per_page: o.perPage,
    pages_fetched: pagesTotal,
    items: itemsTotal,
    baseline_rss_bytes: baseline,
    sampled_peak_rss_bytes: peak,
    vm_hwm_bytes: hwm,
    client: o.client === 'fetch' ? 'fetch' : `http.Agent(keepAlive, maxSockets=${o.maxSockets})`,
    node: process.version,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e) => {
  process.stderr.write(`concurrency_node: ${e.stack || e}\n`);
  process.exit(1);
});
