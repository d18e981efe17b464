#!/usr/bin/env node
'use strict';
// Node.js reference for the sandbox benchmark (tools/bench/sandbox): the cost
// of a node:vm context, the unit a Node integration runtime isolates a
// customer script in.
//
//   node --expose-gc tools/bench/sandbox_node.js [--contexts N] [--rounds R] [--batch S]
//
// - memory: N contexts created and kept alive (each has run a trivial script,
//   so it is fully set up); (RSS after - RSS before) / N, after a full GC on
//   both sides when --expose-gc is given;
// - creation: R rounds of S contexts; median microseconds per context.
// Output: one JSON line.

const vm = require('node:vm');
const { performance } = require('node:perf_hooks');

const o = { contexts: 10000, rounds: 7, batch: 2000 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = { '--contexts': 'contexts', '--rounds': 'rounds', '--batch': 'batch' }[argv[i]];
  if (!key || !/^\d+$/.test(argv[i + 1] || '')) {
    process.stderr.write('usage: node --expose-gc sandbox_node.js [--contexts N] [--rounds R] [--batch S]\n');
    process.exit(2);
  }
  o[key] = parseInt(argv[i + 1], 10);
}

const gc = typeof global.gc === 'function' ? () => { global.gc(); global.gc(); } : () => {};
const script = new vm.Script('0');

function makeContext() {
  const c = vm.createContext({});
  script.runInContext(c);
  return c;
}

function median(a) {
  a.sort((x, y) => x - y);
  const n = a.length;
  return n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
}

// Memory first, while the process is fresh.
gc();
const before = process.memoryUsage.rss();
const keep = new Array(o.contexts);
for (let i = 0; i < o.contexts; i++) keep[i] = makeContext();
gc();
const after = process.memoryUsage.rss();
const perContext = Math.round((after - before) / o.contexts);

// Creation time.
for (let i = 0; i < o.batch; i++) makeContext(); // warm-up
const us = [];
for (let r = 0; r < o.rounds; r++) {
  gc();
  const t0 = performance.now();
  for (let i = 0; i < o.batch; i++) makeContext();
  us.push(((performance.now() - t0) * 1000) / o.batch);
}

const createUs = median(us);

process.stdout.write(`${JSON.stringify({
  runtime: 'node',
  contexts: o.contexts,
  context_bytes: perContext,
  context_create_us: Number(createUs.toFixed(2)),
  contexts_per_s: Math.round(1e6 / createUs),
  rss_before_bytes: before,
  rss_after_bytes: after,
  gc: typeof global.gc === 'function',
  live: keep.length,
  node: process.version,
})}\n`);
