'use strict';
// Start the simulator as a child process for tests and harnesses:
//
//   const { startSimulator } = require('<repo>/tools/simulator/lib/spawn');
//   const sim = await startSimulator(['--seed', '7']);
//   ... sim.url ...
//   await sim.stop();
//
// The child gets --port 0 and --exit-on-stdin-close, so it exits even when the
// parent dies without calling stop().

const path = require('node:path');
const { spawn } = require('node:child_process');

const SERVER = path.join(__dirname, '..', 'server.js');

function startSimulator(args = [], { timeoutMs = 10000, host = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVER, '--port', '0', '--host', host, '--exit-on-stdin-close', ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      reject(new Error(`simulator did not start within ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    const exited = new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /^LISTENING (\d+)\n/.exec(stdout);
      if (m && !settled) {
        settled = true;
        clearTimeout(timer);
        const port = parseInt(m[1], 10);
        resolve({
          port,
          url: `http://${host}:${port}`,
          child,
          exited,
          stdout: () => stdout,
          stderr: () => stderr,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            return exited;
          },
        });
      }
    });
    child.once('exit', (code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`simulator exited with code ${code} before listening; stderr: ${stderr}`));
    });
  });
}

module.exports = { startSimulator, SERVER };
