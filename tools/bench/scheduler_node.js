'use strict';
// Node.js reference for the memory per schedule of tools/bench/scheduler: one
// timer per schedule (setTimeout re-armed for the next slot, the common
// pattern of a Node scheduler), a closure holding the integration id and its
// interval. Prints one JSON line: {"schedules", "heap_bytes_per_timer",
// "rss_bytes_per_timer"}. Run with --expose-gc so the heap is measured after a
// collection.
//   node --expose-gc tools/bench/scheduler_node.js [N]
const n = Number(process.argv[2] || 100000);
const INTERVALS = [15 * 60e3, 60 * 60e3, 6 * 60 * 60e3, 24 * 60 * 60e3];

function settle() {
  if (global.gc) { global.gc(); global.gc(); }
  return process.memoryUsage();
}

const before = settle();
const timers = new Array(n);
for (let i = 0; i < n; i++) {
  const id = `org-${String(Math.floor(i / 3)).padStart(5, '0')}-${['github', 'okta', 'aws'][i % 3]}-${i}`;
  const every = INTERVALS[i % 4];
  const fire = () => { timers[i] = setTimeout(fire, every); timers[i].unref(); void id; };
  timers[i] = setTimeout(fire, every + (i % 1000));
  timers[i].unref();
}
const after = settle();
process.stdout.write(JSON.stringify({
  schedules: n,
  heap_bytes_per_timer: Math.round((after.heapUsed - before.heapUsed) / n),
  rss_bytes_per_timer: Math.round((after.rss - before.rss) / n),
}) + '\n');
for (const t of timers) clearTimeout(t);
