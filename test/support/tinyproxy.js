'use strict';
// A real HTTP proxy for the proxy tests: Debian's tinyproxy, started on an ephemeral port with its own config and log.
// Its log is the proof that a connection went through it (one "Request ... CONNECT host:port" line per tunnel).
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

/** The tinyproxy binary, or undefined when it is not installed. */
function tinyproxyBin() {
  const r = spawnSync('sh', ['-c', 'command -v tinyproxy'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/**
 * What a test does without tinyproxy: skip, saying how to get it, except in CI (CI=true), where a missing proxy must
 * fail the run rather than pass it quietly. Returns true when the test may go on.
 */
function needTinyproxy(t) {
  if (tinyproxyBin()) return true;
  if (process.env.CI === 'true')
    throw new Error('tinyproxy is not installed, and CI needs it: apt-get install tinyproxy');
  t.skip('tinyproxy is not installed (apt-get install tinyproxy): the proxy tests did not run');
  return false;
}

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

function accepts(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/**
 * Starts tinyproxy allowing CONNECT to `connectPorts` only (anything else: 403), for 127.0.0.1 only; with
 * basicAuth ({user, password}) it answers 407 to a request without them.
 */
async function startTinyproxy({ connectPorts, basicAuth } = {}) {
  const bin = tinyproxyBin();
  if (!bin) throw new Error('tinyproxy is not installed');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tinyproxy-'));
  const logPath = path.join(dir, 'tinyproxy.log');
  // The port is free when chosen and taken a moment later: another process may get there first, so try again.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const conf = [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 600',
      `LogFile "${logPath}"`,
      'LogLevel Connect',
      'MaxClients 200',
      'Allow 127.0.0.1',
      'DisableViaHeader Yes',
      ...(connectPorts ?? []).map((p) => `ConnectPort ${p}`),
      ...(basicAuth ? [`BasicAuth ${basicAuth.user} ${basicAuth.password}`] : []),
    ].join('\n');
    const confPath = path.join(dir, 'tinyproxy.conf');
    fs.writeFileSync(confPath, `${conf}\n`);
    const child = spawn(bin, ['-d', '-c', confPath], { stdio: 'ignore' });
    let exited = false;
    const gone = new Promise((r) => child.once('exit', () => r((exited = true))));
    const deadline = Date.now() + 10_000;
    while (!exited && Date.now() < deadline && !(await accepts(port))) await new Promise((r) => setTimeout(r, 50));
    if (exited || Date.now() >= deadline) {
      child.kill('SIGKILL');
      await gone;
      continue;
    }
    const log = () => (fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : '');
    return {
      port,
      url: `http://127.0.0.1:${port}`,
      log,
      /** Tunnels asked of the proxy to 127.0.0.1:port or localhost:port. */
      connects(targetPort) {
        const re = new RegExp(
          `Request \\(file descriptor \\d+\\): CONNECT (127\\.0\\.0\\.1|localhost):${targetPort} `,
          'g',
        );
        return (log().match(re) ?? []).length;
      },
      async stop() {
        if (!exited) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
          await gone;
          clearTimeout(timer);
        }
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  fs.rmSync(dir, { recursive: true, force: true });
  throw new Error('tinyproxy did not start in 5 tries');
}

module.exports = { tinyproxyBin, needTinyproxy, startTinyproxy, freePort };
