'use strict';
// Connections cut under traffic: every message ends up delivered or failed loudly; duplicates counted; nothing lost.
const test = require('node:test');
const assert = require('node:assert/strict');
const { ServiceClient } = require('../../nodes/core/service-client.js');
const { DeviceClient } = require('../../nodes/core/device-client.js');
const { startHub, waitFor } = require('../support/flows');
const { faultProxy } = require('../support/fault-proxy');

const keyOf = (hub, id) => /SharedAccessKey=([^;]+)/.exec(hub.deviceConnectionString(id))[1];
const ownerKey = (hub) => /SharedAccessKey=([^;]+)/.exec(hub.hubConnectionString)[1];

function device(hub, id, port, received, transport = 'mqtt') {
  const d = new DeviceClient({
    hostName: 'localhost',
    connectHost: '127.0.0.1',
    port,
    ca: hub.caPem,
    deviceId: id,
    transport,
    credentials: { sharedAccessKey: keyOf(hub, id) },
    retry: { initialDelayMs: 50, maxDelayMs: 200 },
  });
  d.on('message', (m) => received.set(m.messageId, (received.get(m.messageId) ?? 0) + 1));
  d.open();
  return d;
}

function service(hub, port) {
  const s = new ServiceClient({
    hostName: 'localhost',
    connectHost: '127.0.0.1',
    port,
    ca: hub.caPem,
    sharedAccessKeyName: 'service',
    sharedAccessKey: /SharedAccessKey=([^;]+)/.exec(hub.policyConnectionString('service'))[1],
    retry: { initialDelayMs: 50, maxDelayMs: 200 },
  });
  s.open();
  return s;
}

for (const transport of ['mqtt', 'amqp']) {
  test(`${transport} device connection cut 20 times during a 5,000-message stream`, { timeout: 120_000 }, async () => {
    const hub = await startHub({ devices: ['cut'], queueDepth: 10_000 });
    const proxy = await faultProxy(transport === 'mqtt' ? hub.ports.mqtts : hub.ports.amqps);
    const received = new Map();
    const dev = device(hub, 'cut', proxy.port, received, transport);
    const svc = service(hub, hub.ports.amqps);
    void ownerKey;
    let cuts = 0;
    try {
      const sends = [];
      for (let batch = 0; batch < 20; batch++) {
        // Cut only a live connection, mid-stream: 250 messages in flight, then the cut.
        await waitFor(
          () => dev.state === 'connected' && proxy.connections > 0,
          `device reconnected (cut ${batch})`,
          20_000,
        );
        for (let i = batch * 250; i < (batch + 1) * 250; i++) {
          sends.push(
            svc.send('cut', { body: Buffer.from(`m${i}`), messageId: `m${i}`, properties: {} }).then(
              () => 'ok',
              (e) => e.code,
            ),
          );
        }
        await new Promise((r) => setTimeout(r, 15));
        if (proxy.cut() > 0) cuts++;
      }
      const outcomes = await Promise.all(sends);
      const accepted = outcomes.filter((o) => o === 'ok').length;
      assert.equal(accepted, 5000, `every send accepted by the hub (${[...new Set(outcomes)]})`);
      await waitFor(() => received.size === 5000, 'all 5000 received', 30_000).catch((e) => {
        throw new Error(
          `${e.message}: have ${received.size}, device ${dev.state}, hub queue ${JSON.stringify(hub.inspectQueue('cut'))}, hub sees device ${hub.isDeviceConnected('cut')}, proxy connections ${proxy.connections}`,
        );
      });
      const duplicates = [...received.values()].reduce((a, c) => a + c - 1, 0);
      console.log(
        `# ${transport} device cuts: ${cuts}, sent 5000, delivered 5000, duplicated ${duplicates}, failed 0, lost 0`,
      );
      assert.equal(cuts, 20, 'the connection was really cut 20 times');
    } finally {
      await svc.close();
      await dev.close();
      await proxy.close();
      await hub.stop();
    }
  });
}

test(
  'service connection cut 10 times during 3,000 sends: each send resolves or fails loudly; every accepted one arrives',
  { timeout: 120_000 },
  async () => {
    const hub = await startHub({ devices: ['svc-cut'], queueDepth: 10_000 });
    const proxy = await faultProxy(hub.ports.amqps);
    const received = new Map();
    const dev = device(hub, 'svc-cut', hub.ports.mqtts, received);
    const svc = service(hub, proxy.port);
    let cuts = 0;
    try {
      const sends = [];
      for (let batch = 0; batch < 10; batch++) {
        await waitFor(
          () => svc.state === 'connected' && proxy.connections > 0,
          `service reconnected (cut ${batch})`,
          20_000,
        );
        for (let i = batch * 300; i < (batch + 1) * 300; i++) {
          sends.push(
            svc.send('svc-cut', { body: Buffer.from(`s${i}`), messageId: `s${i}`, properties: {} }).then(
              () => 'ok',
              (e) => e.code,
            ),
          );
        }
        await new Promise((r) => setTimeout(r, 5));
        if (proxy.cut() > 0) cuts++;
      }
      const outcomes = await Promise.all(sends);
      const ok = outcomes.map((o, i) => (o === 'ok' ? i : -1)).filter((i) => i >= 0);
      const failed = outcomes.filter((o) => o !== 'ok');
      assert.ok(
        failed.every((c) => ['CONNECTION_LOST', 'NOT_CONNECTED', 'TIMEOUT'].includes(c)),
        `typed failures only: ${[...new Set(failed)]}`,
      );
      await waitFor(() => ok.every((i) => received.has(`s${i}`)), 'every accepted send delivered', 60_000);
      const duplicates = [...received.values()].reduce((a, c) => a + c - 1, 0);
      const failedButDelivered = outcomes.filter((o, i) => o !== 'ok' && received.has(`s${i}`)).length;
      console.log(
        `# service cuts: ${cuts}, sent 3000, accepted ${ok.length}, failed with an error ${failed.length} (of which delivered ${failedButDelivered}), duplicated ${duplicates}, lost 0`,
      );
      assert.equal(cuts, 10, 'the connection was really cut 10 times');
    } finally {
      await svc.close();
      await dev.close();
      await proxy.close();
      await hub.stop();
    }
  },
);

test(
  'an AMQP device keeps receiving past the session window: 3,000 messages on one connection',
  { timeout: 60_000 },
  async () => {
    const hub = await startHub({ devices: ['long'], queueDepth: 5000 });
    const received = new Map();
    const dev = device(hub, 'long', hub.ports.amqps, received, 'amqp');
    const svc = service(hub, hub.ports.amqps);
    const connects = [];
    dev.on('status', (ev) => connects.push(ev.state));
    try {
      await Promise.all(
        Array.from({ length: 3000 }, (_, i) =>
          svc.send('long', { body: Buffer.from('x'), messageId: `l${i}`, properties: {} }),
        ),
      );
      await waitFor(() => received.size === 3000, 'all 3000 received', 30_000).catch((e) => {
        throw new Error(`${e.message}: have ${received.size}, hub queue ${JSON.stringify(hub.inspectQueue('long'))}`);
      });
      assert.equal(connects.filter((s) => s === 'connected').length, 1, 'one connection throughout');
    } finally {
      await svc.close();
      await dev.close();
      await hub.stop();
    }
  },
);
