'use strict';
// Every connection failure names its cause in the node status (short) and once in the log with the fix, not on every
// retry: a host that does not resolve, a port that refuses, one that never answers, a certificate not trusted, a bad key,
// a proxy that refuses or is down (a stand-in answering as tinyproxy does; test/nodes/proxy.test.js has the real one),
// an environment variable that is not set. Each case runs a device over MQTT, one over AMQP and the back end (c2d send)
// through at least 5 retries on a short schedule.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { helper, nodeModules, startHub, waitFor, root } = require('../support/flows');

const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
const RETRY = { initialDelayMs: 30, maxDelayMs: 80, unauthorizedInitialDelayMs: 30, unauthorizedMaxDelayMs: 80 };
const NODES = ['rm', 'ra', 'send'];

/** A device receive over MQTT (rm), one over AMQP (ra, its own config node) and a c2d send (the back end). */
function causeFlow(cfgExtra, connectionString, ca) {
  const cfg = (id, deviceTransport) => ({
    id,
    type: 'iothub-connection',
    mode: 'azure',
    deviceTransport,
    serviceTransport: 'amqp',
    tokenLifetime: 3600,
    retry: RETRY,
    ...cfgExtra,
  });
  const creds = { connectionString, ...(ca ? { ca } : {}) };
  return {
    credentials: { cfg: creds, cfgA: creds },
    flow: [
      { id: 'tab', type: 'tab' },
      cfg('cfg', 'mqtt'),
      cfg('cfgA', 'amqp'),
      at({ id: 'rm', type: 'iothub-device-receive', connection: 'cfg', deviceId: 'd1', output: 'string', wires: [[]] }),
      at({
        id: 'ra',
        type: 'iothub-device-receive',
        connection: 'cfgA',
        deviceId: 'd2',
        output: 'string',
        wires: [[]],
      }),
      at({
        id: 'send',
        type: 'iothub-c2d-send',
        connection: 'cfg',
        deviceId: '',
        deviceIdType: 'str',
        ack: 'none',
        mappings: [],
        wires: [[]],
      }),
    ],
  };
}

// The helper spies on Node's prototype: a spy's calls are every node's, so keep this node's own.
const own = (node, spy) => spy.getCalls().filter((c) => c.thisValue === node);
const texts = (node) => own(node, node.status).map((c) => String(c.args[0].text));
const warnings = (node) => own(node, node.warn).map((c) => String(c.args[0]));

/**
 * Loads the flow, waits until every node has retried at least 5 times, then checks that its status names the cause
 * and that its log has the cause's line (with the fix) exactly once.
 */
async function expectCause(t, { flow, credentials }, { status, log, retried = (node) => retries(node) >= 5 }) {
  await helper.load(nodeModules, flow, credentials);
  const nodes = NODES.map((id) => helper.getNode(id));
  await waitFor(
    () => nodes.every(retried),
    `5 retries on every node (${nodes.map((n) => `${n.id}: ${JSON.stringify(texts(n).slice(-2))}`).join('; ')})`,
    60_000,
  );
  for (const node of nodes) {
    const last = texts(node).at(-1);
    assert.match(last, status, `${node.id}'s status names the cause`);
    const lines = warnings(node).filter((w) => log.test(w));
    assert.equal(
      lines.length,
      1,
      `${node.id} logged the cause once: ${JSON.stringify(warnings(node))} ${JSON.stringify(texts(node))}`,
    );
  }
  t.diagnostic(
    `${nodes.map((n) => `${n.id}: ${retries(n)} retries, status "${texts(n).at(-1)}"`).join('; ')}; log: ${warnings(nodes[0])[0]}`,
  );
  await helper.unload();
}

/** Attempts after the first: the statuses that say a retry is coming. */
function retries(node) {
  return texts(node).filter((t) => /status\.(reconnecting|unauthorized)/.test(t)).length;
}

/** A port nobody listens on. */
async function closedPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** An HTTP proxy that answers every CONNECT with `answer` (a status line's code and text): the refusals, without tinyproxy. */
async function answeringProxy(answer) {
  const sockets = new Set();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let head = '';
    s.on('data', (c) => {
      head += c.toString('latin1');
      if (head.includes('\r\n\r\n')) s.end(`HTTP/1.1 ${answer}\r\nContent-Length: 0\r\n\r\n`);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

test('connection failures say why', { timeout: 180_000 }, async (t) => {
  await helper.startServer();
  t.after(async () => {
    await helper.unload().catch(() => undefined);
    await helper.stopServer();
  });

  await t.test('a host that does not resolve: "cannot resolve HOST"', async (t) => {
    const host = `no-such-hub-${process.pid}.invalid`;
    const key = Buffer.alloc(32, 1).toString('base64');
    await expectCause(t, causeFlow({}, `HostName=${host};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`), {
      status: new RegExp(`^cannot resolve ${host.replace(/\./g, '\\.')} · `),
      log: /cannot resolve .*check the HostName/,
    });
  });

  await t.test('a port that refuses: "refused"', async (t) => {
    const hub = await startHub();
    try {
      const port = await closedPort();
      await expectCause(t, causeFlow({ mqttPort: port, amqpPort: port }, hub.hubConnectionString, hub.caPem), {
        status: /^refused · /,
        log: new RegExp(`:${port} refused the connection: check the port`),
      });
    } finally {
      await hub.stop();
    }
  });

  await t.test('a port that accepts and never answers: "timed out"', async (t) => {
    const hub = await startHub();
    const sockets = new Set();
    const silent = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    });
    await new Promise((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const { port } = silent.address();
      // Keep-alive 1 s: each attempt gives up after 1 s.
      await expectCause(
        t,
        causeFlow({ mqttPort: port, amqpPort: port, keepAlive: 1 }, hub.hubConnectionString, hub.caPem),
        { status: /^timed out · /, log: /did not complete the connection in 1 s: a firewall may drop/ },
      );
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
      await hub.stop();
    }
  });

  await t.test('a hub whose certificate is not trusted: "certificate not trusted"', async (t) => {
    // Its own CA, not the tests' shared one, and no CA in the config node.
    const hub = await startHub({ dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-untrusted-')) });
    try {
      await expectCause(
        t,
        causeFlow({ mqttPort: hub.ports.mqtts, amqpPort: hub.ports.amqps }, hub.hubConnectionString),
        {
          status: /^certificate not trusted: localhost · /,
          log: /certificate not trusted: localhost; .*CA certificate \(PEM\) in the config node.*\([A-Z_]+\)/,
        },
      );
    } finally {
      await hub.stop();
    }
  });

  await t.test('a wrong key: "unauthorized"', async (t) => {
    const hub = await startHub();
    try {
      const badKey = Buffer.alloc(32, 7).toString('base64');
      const wrong = hub.hubConnectionString.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${badKey}`);
      await expectCause(t, causeFlow({ mqttPort: hub.ports.mqtts, amqpPort: hub.ports.amqps }, wrong, hub.caPem), {
        status: /unauthorized/,
        log: /not authori[sz]ed|unauthori[sz]ed|refused the token/i,
      });
    } finally {
      await hub.stop();
    }
  });

  for (const [answer, cause, status, log] of [
    [
      '403 Forbidden',
      'proxy refused (403)',
      /^proxy refused \(403\) · /,
      /refused to connect to .* \(403\): allow CONNECT to that port/,
    ],
    [
      '407 Proxy Authentication Required',
      'proxy auth required (407)',
      /^proxy auth required \(407\) · /,
      /wants a user name and password \(407\)/,
    ],
  ]) {
    await t.test(`a proxy that answers ${answer}: "${cause}"`, async (t) => {
      const hub = await startHub();
      const proxy = await answeringProxy(answer);
      try {
        await expectCause(
          t,
          causeFlow(
            { mqttPort: hub.ports.mqtts, amqpPort: hub.ports.amqps, proxyMode: 'url', proxyUrl: proxy.url },
            hub.hubConnectionString,
            hub.caPem,
          ),
          { status, log },
        );
      } finally {
        await proxy.close();
        await hub.stop();
      }
    });
  }

  await t.test('a proxy that cannot be reached: "proxy down"', async (t) => {
    const hub = await startHub();
    try {
      const proxyUrl = `http://127.0.0.1:${await closedPort()}`;
      await expectCause(
        t,
        causeFlow(
          { mqttPort: hub.ports.mqtts, amqpPort: hub.ports.amqps, proxyMode: 'url', proxyUrl },
          hub.hubConnectionString,
          hub.caPem,
        ),
        { status: /^proxy down · /, log: /cannot be reached \(ECONNREFUSED\): check the proxy URL/ },
      );
    } finally {
      await hub.stop();
    }
  });

  await t.test('a fleet of 20 devices that loses its hub logs each cause once, not once per device', async (t) => {
    const ids = Array.from({ length: 20 }, (_, i) => `f${i}`);
    const hub = await startHub();
    try {
      const { flow, credentials } = causeFlow(
        { mqttPort: hub.ports.mqtts, amqpPort: hub.ports.amqps },
        hub.hubConnectionString,
        hub.caPem,
      );
      flow.find((n) => n.id === 'rm').deviceId = ids.join(' ');
      await helper.load(nodeModules, flow, credentials);
      const rm = helper.getNode('rm');
      await waitFor(() => ids.every((id) => hub.isDeviceConnected(id)), '20 devices connected', 30_000);
      await hub.stop();
      await waitFor(() => warnings(rm).some((w) => /refused the connection/.test(w)), 'a "refused" line', 30_000);
      // Two seconds more: on the 30-80 ms schedule every device retries against the closed port dozens of times.
      await new Promise((r) => setTimeout(r, 2000));
      const lines = warnings(rm);
      const refused = lines.filter((w) => /refused the connection/.test(w));
      assert.equal(refused.length, 1, `one "refused" line for 20 devices: ${JSON.stringify(lines)}`);
      assert.ok(lines.length <= 3, `a line per cause, not per device: ${JSON.stringify(lines)}`);
      assert.match(refused[0], /^f\d+: /, 'names the first device it happened to');
      t.diagnostic(`20 devices cut off: ${lines.length} log lines: ${JSON.stringify(lines)}`);
      await helper.unload();
    } finally {
      await helper.unload().catch(() => undefined);
      await hub.stop().catch(() => undefined);
    }
  });

  await t.test(
    'example 04 as a new user tries it (short retries): its variable unset, then a hub that does not resolve',
    async (t) => {
      const example = JSON.parse(
        fs.readFileSync(path.join(root, 'examples', '04 A device on a real Azure IoT Hub.json')),
      );
      // Its own nodes, less the comment and debug (not loaded here), the receive node's output unwired.
      const flow = example
        .filter((n) => !['comment', 'debug'].includes(n.type))
        .map((n) => (n.type === 'iothub-connection' ? { ...n, retry: RETRY } : n.wires ? { ...n, wires: [[]] } : n));
      const cfg = example.find((n) => n.type === 'iothub-connection');
      const recvId = example.find((n) => n.type === 'iothub-device-receive').id;
      const name = cfg.connectionStringEnv;
      const saved = process.env[name];
      try {
        delete process.env[name];
        await helper.load(nodeModules, flow, {});
        let recv = helper.getNode(recvId);
        await waitFor(() => texts(recv).length > 0, 'a status');
        assert.equal(texts(recv).at(-1), `env var ${name} not set`);
        await helper.unload();

        const host = `no-such-hub-${process.pid}.azure-devices.invalid`;
        process.env[name] = `HostName=${host};DeviceId=dev1;SharedAccessKey=${Buffer.alloc(32, 3).toString('base64')}`;
        await helper.load(nodeModules, flow, {});
        recv = helper.getNode(recvId);
        await waitFor(() => retries(recv) >= 5, `5 retries (${texts(recv).at(-1)})`, 30_000);
        assert.match(texts(recv).at(-1), new RegExp(`^cannot resolve ${host.replace(/\./g, '\\.')} · `));
        assert.equal(warnings(recv).length, 1, `one log line: ${JSON.stringify(warnings(recv))}`);
        t.diagnostic(`example 04: "env var ${name} not set", then "${texts(recv).at(-1)}"; log: ${warnings(recv)[0]}`);
        await helper.unload();
      } finally {
        if (saved === undefined) delete process.env[name];
        else process.env[name] = saved;
      }
    },
  );

  await t.test('the environment variable of the connection string is not set: "env var NAME not set"', async (t) => {
    const name = `IOTHUB_CAUSES_UNSET_${process.pid}`;
    delete process.env[name];
    const { flow } = causeFlow({ connectionStringEnv: name }, '');
    await helper.load(nodeModules, flow, {});
    const nodes = NODES.map((id) => helper.getNode(id));
    await waitFor(() => nodes.every((n) => texts(n).length > 0), 'a status on every node');
    for (const node of nodes) assert.equal(texts(node).at(-1), `env var ${name} not set`);
    // Said once per config node, with the fix; the nodes that use it do not repeat it.
    const lines = helper
      .log()
      .args.map((a) => a[0])
      .filter((m) => typeof m?.msg === 'string' && m.msg.includes(`the environment variable ${name} is not set`));
    assert.equal(lines.length, 2, `one line per config node: ${JSON.stringify(lines)}`);
    assert.match(lines[0].msg, /set it before starting Node-RED, or paste a connection string/);
    t.diagnostic(`status "${texts(nodes[0]).at(-1)}"; log: ${lines[0].msg}`);
    await helper.unload();
  });
});
