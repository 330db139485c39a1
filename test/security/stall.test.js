'use strict';
// The hub hangs for 30 s under traffic (a proxy stops moving bytes, connections stay open): keep-alive notices on
// every connection, the nodes say so and reconnect, and every msg ends delivered or failed to the Catch node.
const test = require('node:test');
const assert = require('node:assert/strict');
const { helper, nodeModules, startHub, twoDevicesFlow, waitFor } = require('../support/flows');
const { faultProxy } = require('../support/fault-proxy');

async function stopAll(hub, ...proxies) {
  await helper.unload().catch(() => undefined);
  await helper.stopServer();
  for (const p of proxies) await p.close();
  await hub.stop();
}

const STALL_MS = Number(process.env.STALL_MS || 30_000);
const KEEPALIVE_S = 5;

test(
  `hub stalled ${STALL_MS / 1000} s under traffic: keep-alive notices, nothing lost`,
  { timeout: 180_000 },
  async () => {
    const hub = await startHub({ devices: ['stall-m', 'stall-a'], queueDepth: 10_000 });
    const mqttProxy = await faultProxy(hub.ports.mqtts);
    const amqpProxy = await faultProxy(hub.ports.amqps);
    await helper.startServer();
    const { flow, credentials } = twoDevicesFlow(hub, {
      mqttDevice: 'stall-m',
      amqpDevice: 'stall-a',
      cfgExtra: { keepAlive: KEEPALIVE_S, mqttPort: mqttProxy.port, amqpPort: amqpProxy.port },
      send: { ack: 'none', trackDelivery: false, wires: [[]] },
    });
    try {
      await helper.load(nodeModules, flow, credentials);
      const statuses = [];
      for (const id of ['rm', 'ra', 'send'])
        helper.getNode(id).on('call:status', (call) => statuses.push({ id, at: Date.now(), ...call.args[0] }));
      const received = new Map();
      const failed = new Map();
      helper.getNode('out').on('input', (m) => received.set(m.payload, (received.get(m.payload) ?? 0) + 1));
      helper.getNode('caught').on('input', (m) => failed.set(m.payload, m.error?.message));
      await waitFor(
        () => hub.isDeviceConnected('stall-m') && hub.isDeviceConnected('stall-a'),
        'both devices connected',
      );
      let sent = 0;
      const stream = async (ms) => {
        const until = Date.now() + ms;
        while (Date.now() < until) {
          helper.getNode('send').receive({ payload: `m${sent}`, deviceId: sent % 2 ? 'stall-a' : 'stall-m' });
          sent++;
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await stream(3000);
      const acceptedBefore = mqttProxy.accepted + amqpProxy.accepted;
      mqttProxy.stall();
      amqpProxy.stall();
      const stalledAt = Date.now();
      await stream(STALL_MS);
      const reconnectAttempts = mqttProxy.accepted + amqpProxy.accepted - acceptedBefore;
      mqttProxy.resume();
      amqpProxy.resume();
      await stream(5000);
      const accounted = () => {
        for (let i = 0; i < sent; i++) if (!received.has(`m${i}`) && !failed.has(`m${i}`)) return false;
        return true;
      };
      await waitFor(accounted, 'every msg delivered or failed to Catch', 60_000);
      await waitFor(
        () => hub.isDeviceConnected('stall-m') && hub.isDeviceConnected('stall-a'),
        'both devices back',
        30_000,
      );
      const duplicated = [...received.values()].reduce((a, c) => a + c - 1, 0);
      const failedNotDelivered = [...failed.keys()].filter((p) => !received.has(p)).length;
      const noticed = statuses.filter((s) => s.at > stalledAt && s.at < stalledAt + STALL_MS && s.fill !== 'green');
      const reasons = [...new Set(failed.values())];
      console.log(
        `# stall ${STALL_MS / 1000} s, keep-alive ${KEEPALIVE_S} s: sent ${sent}, delivered ${received.size}, duplicated ${duplicated}, failed with an error ${failed.size} (not delivered ${failedNotDelivered}), lost 0; reconnect attempts during the stall ${reconnectAttempts}; statuses during it ${JSON.stringify([...new Set(noticed.map((s) => `${s.id}:${s.text}`))])}; errors ${JSON.stringify(reasons)}`,
      );
      assert.equal(received.size + failedNotDelivered, sent, 'every msg delivered or failed to Catch');
      for (const id of ['rm', 'ra', 'send'])
        assert.ok(
          noticed.some((s) => s.id === id),
          `${id} showed the stall in its status`,
        );
      assert.ok(
        reconnectAttempts >= 3,
        `keep-alive noticed and the clients reconnected (${reconnectAttempts} attempts)`,
      );
      assert.ok(
        reasons.every((r) => typeof r === 'string' && r.length > 0),
        'every failure says why',
      );
      const last = (id) => statuses.filter((s) => s.id === id).pop();
      for (const id of ['rm', 'ra']) assert.equal(last(id).fill, 'green', `${id} connected again`);
    } finally {
      await stopAll(hub, mqttProxy, amqpProxy);
    }
  },
);

test(
  'slow links, 150 ms each way on every connection: 600 tracked sends all delivered, no error, no red status',
  { timeout: 120_000 },
  async () => {
    const hub = await startHub({ devices: ['slow-m', 'slow-a'], queueDepth: 10_000 });
    const mqttProxy = await faultProxy(hub.ports.mqtts);
    const amqpProxy = await faultProxy(hub.ports.amqps);
    mqttProxy.slow(150);
    amqpProxy.slow(150);
    await helper.startServer();
    const { flow, credentials } = twoDevicesFlow(hub, {
      mqttDevice: 'slow-m',
      amqpDevice: 'slow-a',
      cfgExtra: { mqttPort: mqttProxy.port, amqpPort: amqpProxy.port },
    });
    try {
      await helper.load(nodeModules, flow, credentials);
      const statuses = [];
      for (const id of ['rm', 'ra', 'send'])
        helper.getNode(id).on('call:status', (call) => statuses.push({ id, ...call.args[0] }));
      const received = new Set();
      const outcomes = new Map();
      const caught = [];
      helper.getNode('out').on('input', (m) => received.add(m.payload));
      helper.getNode('tracked').on('input', (m) => outcomes.set(m.payload, m.delivery));
      helper.getNode('caught').on('input', (m) => caught.push(m.error?.message));
      const started = Date.now();
      await waitFor(
        () => hub.isDeviceConnected('slow-m') && hub.isDeviceConnected('slow-a'),
        'both devices connected over slow links',
        20_000,
      );
      const connectMs = Date.now() - started;
      const sent = 600;
      for (let i = 0; i < sent; i++)
        helper.getNode('send').receive({ payload: `m${i}`, deviceId: i % 2 ? 'slow-a' : 'slow-m' });
      await waitFor(() => received.size === sent && outcomes.size === sent, `all ${sent} received and tracked`, 60_000);
      const delivered = [...outcomes.values()].filter((d) => d === 'delivered').length;
      console.log(
        `# slow links 150 ms each way: connected in ${connectMs} ms; sent ${sent}, received ${received.size}, tracked delivered ${delivered}, caught ${caught.length}, in ${Date.now() - started} ms`,
      );
      assert.equal(delivered, sent);
      assert.deepEqual(caught, []);
      assert.deepEqual(
        statuses.filter((s) => s.fill === 'red'),
        [],
      );
    } finally {
      await stopAll(hub, mqttProxy, amqpProxy);
    }
  },
);
