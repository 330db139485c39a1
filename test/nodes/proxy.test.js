'use strict';
// Through a real HTTP proxy (tinyproxy, started here on an ephemeral port): devices over MQTT-WS and AMQP-WS, the back
// end's sends and feedback over AMQP-WS, 1,000 messages each and none lost, and MQTT and AMQP on their own ports where
// the proxy allows CONNECT to them. Tinyproxy's own log proves every connection went through it: the hub is reached
// through a counting TCP relay, and the relay accepted exactly as many connections as the proxy tunnelled. A proxy that
// refuses (403 by its ConnectPort rule, 407 by BasicAuth) or is down says so in the status within 5 s.
const test = require('node:test');
const assert = require('node:assert/strict');
const { helper, nodeModules, startHub, waitFor } = require('../support/flows');
const { faultProxy } = require('../support/fault-proxy');
const { needTinyproxy, startTinyproxy, freePort } = require('../support/tinyproxy');

const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
const own = (node, spy) => spy.getCalls().filter((c) => c.thisValue === node);
const texts = (node) => own(node, node.status).map((c) => String(c.args[0].text));

/** Device receive `rm` on cfg, `ra` on cfgA, into helper `out`; c2d send `send` on cfg (outcomes to `tracked`). */
function proxyFlow(hub, cfgExtra, cfgAExtra, creds = {}) {
  const cfg = (id, extra) => ({
    id,
    type: 'iothub-connection',
    mode: 'azure',
    tokenLifetime: 3600,
    retry: { initialDelayMs: 100, maxDelayMs: 500 },
    ...extra,
  });
  const c = { connectionString: hub.hubConnectionString, ca: hub.caPem, ...creds };
  return {
    credentials: { cfg: c, cfgA: c },
    flow: [
      { id: 'tab', type: 'tab' },
      cfg('cfg', cfgExtra),
      cfg('cfgA', cfgAExtra),
      at({
        id: 'rm',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId: 'pm',
        output: 'string',
        wires: [['out']],
      }),
      at({
        id: 'ra',
        type: 'iothub-device-receive',
        connection: 'cfgA',
        deviceId: 'pa',
        output: 'string',
        wires: [['out']],
      }),
      at({
        id: 'send',
        type: 'iothub-c2d-send',
        connection: 'cfg',
        deviceId: '',
        deviceIdType: 'str',
        ack: 'full',
        trackDelivery: true,
        trackTimeout: 120,
        mappings: [],
        wires: [['tracked']],
      }),
      at({ id: 'catch', type: 'catch', scope: null, uncaught: false, wires: [['caught']] }),
      at({ id: 'out', type: 'helper' }),
      at({ id: 'tracked', type: 'helper' }),
      at({ id: 'caught', type: 'helper' }),
    ],
  };
}

test('an HTTP proxy (tinyproxy)', { timeout: 240_000 }, async (t) => {
  if (!needTinyproxy(t)) return;
  await helper.startServer();
  t.after(async () => {
    await helper.unload().catch(() => undefined);
    await helper.stopServer();
  });

  await t.test(
    'MQTT-WS and AMQP-WS devices receive 1,000 messages each, sent and tracked over AMQP-WS; every connection in the proxy log',
    async (t) => {
      const hub = await startHub({ queueDepth: 5000, devices: ['pm', 'pa'] });
      const relay = await faultProxy(hub.ports.https);
      const proxy = await startTinyproxy({ connectPorts: [relay.port] });
      try {
        const via = { proxyMode: 'url', proxyUrl: proxy.url, wsPort: relay.port, serviceTransport: 'amqp-ws' };
        const { flow, credentials } = proxyFlow(
          hub,
          { ...via, deviceTransport: 'mqtt-ws' },
          { ...via, deviceTransport: 'amqp-ws' },
        );
        await helper.load(nodeModules, flow, credentials);
        const out = [];
        const tracked = [];
        const caught = [];
        helper.getNode('out').on('input', (m) => out.push(m));
        helper.getNode('tracked').on('input', (m) => tracked.push(m));
        helper.getNode('caught').on('input', (m) => caught.push(m));
        const [rm, ra, send] = ['rm', 'ra', 'send'].map((id) => helper.getNode(id));
        await waitFor(
          () => hub.isDeviceConnected('pm') && hub.isDeviceConnected('pa') && texts(send).at(-1)?.endsWith('connected'),
          `both devices and the back end connected (${[rm, ra, send].map((n) => texts(n).at(-1)).join(' / ')})`,
          30_000,
        );
        const started = Date.now();
        const N = 1000;
        for (let i = 0; i < N; i++) {
          send.receive({ payload: `m ${i}`, deviceId: 'pm' });
          send.receive({ payload: `a ${i}`, deviceId: 'pa' });
        }
        await waitFor(() => out.length >= 2 * N, `2,000 messages received (got ${out.length})`, 120_000);
        await waitFor(() => tracked.length >= 2 * N, `2,000 outcomes (got ${tracked.length})`, 120_000);
        const ms = Date.now() - started;
        for (const [id, prefix] of [
          ['pm', 'm'],
          ['pa', 'a'],
        ]) {
          const got = new Set(out.filter((m) => m.deviceId === id).map((m) => m.payload));
          assert.equal(got.size, N, `${id}: every message once`);
          for (let i = 0; i < N; i++) assert.ok(got.has(`${prefix} ${i}`), `${id}: message ${i} arrived`);
        }
        assert.equal(out.length, 2 * N, 'no duplicates');
        assert.deepEqual(
          [...new Set(tracked.map((m) => m.delivery))],
          ['delivered'],
          'every message tracked as delivered by feedback over AMQP-WS',
        );
        assert.equal(caught.length, 0, `nothing failed: ${JSON.stringify(caught.slice(0, 3).map((m) => m.error))}`);
        // Three connections (two devices, the back end), each tunnelled: the relay in front of the hub saw no other.
        const tunnels = proxy.connects(relay.port);
        assert.ok(tunnels >= 3, `at least 3 tunnels in the proxy log (${tunnels})`);
        assert.equal(relay.accepted, tunnels, 'every connection the hub got came through the proxy');
        t.diagnostic(
          `through tinyproxy: 1,000 messages each to an MQTT-WS and an AMQP-WS device, sent and tracked over AMQP-WS, in ${ms} ms; ${out.length} received, ${tracked.length} delivered outcomes, 0 lost; ${tunnels} tunnels in tinyproxy's log = ${relay.accepted} connections at the hub`,
        );
        await helper.unload();
      } finally {
        await helper.unload().catch(() => undefined);
        await proxy.stop();
        await relay.close();
        await hub.stop();
      }
    },
  );

  await t.test('MQTT (8883) and AMQP (5671) through the proxy where it allows CONNECT to those ports', async (t) => {
    const hub = await startHub({ devices: ['pm', 'pa'] });
    const mqttRelay = await faultProxy(hub.ports.mqtts);
    const amqpRelay = await faultProxy(hub.ports.amqps);
    const proxy = await startTinyproxy({ connectPorts: [mqttRelay.port, amqpRelay.port] });
    try {
      const via = { proxyMode: 'url', proxyUrl: proxy.url, mqttPort: mqttRelay.port, amqpPort: amqpRelay.port };
      const { flow, credentials } = proxyFlow(
        hub,
        { ...via, deviceTransport: 'mqtt', serviceTransport: 'amqp' },
        { ...via, deviceTransport: 'amqp', serviceTransport: 'amqp' },
      );
      await helper.load(nodeModules, flow, credentials);
      const out = [];
      helper.getNode('out').on('input', (m) => out.push(m));
      const send = helper.getNode('send');
      await waitFor(() => hub.isDeviceConnected('pm') && hub.isDeviceConnected('pa'), 'both devices connected', 30_000);
      for (let i = 0; i < 50; i++) {
        send.receive({ payload: `m ${i}`, deviceId: 'pm' });
        send.receive({ payload: `a ${i}`, deviceId: 'pa' });
      }
      await waitFor(() => out.length === 100, `100 messages (got ${out.length})`, 30_000);
      const mqttTunnels = proxy.connects(mqttRelay.port);
      const amqpTunnels = proxy.connects(amqpRelay.port);
      assert.ok(mqttTunnels >= 1 && amqpTunnels >= 2, `tunnels: MQTT ${mqttTunnels}, AMQP ${amqpTunnels}`);
      assert.equal(mqttRelay.accepted, mqttTunnels, 'every MQTT connection came through the proxy');
      assert.equal(amqpRelay.accepted, amqpTunnels, 'every AMQP connection came through the proxy');
      t.diagnostic(`own ports through tinyproxy: 100 messages; tunnels MQTT ${mqttTunnels}, AMQP ${amqpTunnels}`);
      await helper.unload();
    } finally {
      await helper.unload().catch(() => undefined);
      await proxy.stop();
      await mqttRelay.close();
      await amqpRelay.close();
      await hub.stop();
    }
  });

  await t.test(
    'transport auto behind a proxy that allows 443 only: the looks at 8883 / 5671 are refused, WebSockets through it',
    async (t) => {
      const hub = await startHub({ devices: ['pm', 'pa'] });
      const relay = await faultProxy(hub.ports.https);
      const proxy = await startTinyproxy({ connectPorts: [relay.port] });
      try {
        const via = {
          proxyMode: 'url',
          proxyUrl: proxy.url,
          mqttPort: hub.ports.mqtts,
          amqpPort: hub.ports.amqps,
          wsPort: relay.port,
          serviceTransport: 'auto',
        };
        const { flow, credentials } = proxyFlow(
          hub,
          { ...via, deviceTransport: 'auto' },
          { ...via, deviceTransport: 'amqp-auto' },
        );
        const started = Date.now();
        await helper.load(nodeModules, flow, credentials);
        const nodes = ['rm', 'ra', 'send'].map((id) => helper.getNode(id));
        const want = ['MQTT-WS', 'AMQP-WS', 'AMQP-WS'].map((v) => `iothub-connection.status.connected (${v})`);
        await waitFor(
          () => nodes.every((n, i) => texts(n).at(-1) === want[i]),
          `connected over WebSockets (${nodes.map((n) => texts(n).at(-1)).join(' / ')})`,
          10_000,
        );
        const ms = Date.now() - started;
        const out = [];
        helper.getNode('out').on('input', (m) => out.push(m));
        for (let i = 0; i < 20; i++) {
          nodes[2].receive({ payload: `m ${i}`, deviceId: 'pm' });
          nodes[2].receive({ payload: `a ${i}`, deviceId: 'pa' });
        }
        await waitFor(() => out.length >= 40, `40 messages (got ${out.length})`, 20_000);
        const looks = proxy.connects(hub.ports.mqtts) + proxy.connects(hub.ports.amqps);
        assert.ok(looks >= 2, `the looks at the own ports asked the proxy (${looks})`);
        assert.equal(relay.accepted, proxy.connects(relay.port), 'every WebSocket came through the proxy');
        t.diagnostic(
          `auto behind a 443-only proxy: connected over WebSockets in ${ms} ms; ${looks} looks at 8883/5671 refused by the proxy`,
        );
        await helper.unload();
      } finally {
        await helper.unload().catch(() => undefined);
        await proxy.stop();
        await relay.close();
        await hub.stop();
      }
    },
  );

  await t.test(
    'a proxy that refuses (403, 407) or is down says so within 5 s; with the credentials, 407 passes',
    async (t) => {
      const hub = await startHub({ devices: ['pm', 'pa'] });
      // 403: CONNECT allowed to another port only. 407: BasicAuth.
      const strict = await startTinyproxy({ connectPorts: [1] });
      const password = 'pr0xy-s3cret-pw';
      const authed = await startTinyproxy({ connectPorts: [hub.ports.https], basicAuth: { user: 'nr', password } });
      const downUrl = `http://127.0.0.1:${await freePort()}`;
      try {
        for (const [url, status] of [
          [strict.url, /^proxy refused \(403\)/],
          [authed.url, /^proxy auth required \(407\)/],
          [downUrl, /^proxy down/],
        ]) {
          const via = { proxyMode: 'url', proxyUrl: url, wsPort: hub.ports.https, serviceTransport: 'amqp-ws' };
          const { flow, credentials } = proxyFlow(
            hub,
            { ...via, deviceTransport: 'mqtt-ws' },
            { ...via, deviceTransport: 'amqp-ws' },
          );
          const started = Date.now();
          await helper.load(nodeModules, flow, credentials);
          const nodes = ['rm', 'ra', 'send'].map((id) => helper.getNode(id));
          await waitFor(
            () => nodes.every((n) => status.test(texts(n).at(-1) ?? '')),
            `${status} on every node (${nodes.map((n) => texts(n).at(-1)).join(' / ')})`,
            5000,
          );
          const ms = Date.now() - started;
          const warned = own(nodes[0], nodes[0].warn).map((c) => String(c.args[0]));
          t.diagnostic(`${url}: "${texts(nodes[0]).at(-1)}" in ${ms} ms; log: ${warned[0]}`);
          await helper.unload();
        }
        // The same proxy with the user and password as credentials: connected, the password nowhere.
        const via = { proxyMode: 'url', proxyUrl: authed.url, wsPort: hub.ports.https, serviceTransport: 'amqp-ws' };
        const { flow, credentials } = proxyFlow(
          hub,
          { ...via, deviceTransport: 'mqtt-ws' },
          { ...via, deviceTransport: 'amqp-ws' },
          { proxyUser: 'nr', proxyPassword: password },
        );
        await helper.load(nodeModules, flow, credentials);
        await waitFor(
          () => hub.isDeviceConnected('pm') && hub.isDeviceConnected('pa'),
          'connected with the proxy user',
        );
        const all = JSON.stringify([
          helper.log().args,
          ...['rm', 'ra', 'send'].map((id) => helper.getNode(id).status.args),
        ]);
        assert.ok(!all.includes(password), 'the proxy password appears in no log or status');
        assert.ok(authed.connects(hub.ports.https) >= 2, 'the authenticated tunnels are in the log');
        await helper.unload();
      } finally {
        await helper.unload().catch(() => undefined);
        await strict.stop();
        await authed.stop();
        await hub.stop();
      }
    },
  );
});
