'use strict';
// 10,000 messages through c2d send while the hub restarts twice: every msg ends in exactly one done() or
// done(err), and the device receives every message that got done(). The sends may wait 120 s for the hub (the
// default is 30 s): on a machine with eight busy processes per core the burst alone took over 30 s to drain, and this
// test is about restarts, not about the speed of the machine.
const test = require('node:test');
const assert = require('node:assert/strict');
const { DeviceClient } = require('../../nodes/core/device-client.js');
const { helper, nodeModules, startHub, configNode, waitFor } = require('../support/flows');

const TOTAL = 10_000;

test(
  '10,000 sends across two hub restarts: one done per msg, nothing that got done() is lost',
  { timeout: 400_000 },
  async () => {
    let hub = await startHub({ queueDepth: TOTAL * 2, devices: ['stream'] });
    const { dataDir, ports } = hub;
    const key = /SharedAccessKey=([^;]+)/.exec(hub.deviceConnectionString('stream'))[1];
    const received = new Map();
    const device = new DeviceClient({
      hostName: 'localhost',
      connectHost: '127.0.0.1',
      port: ports.mqtts,
      ca: hub.caPem,
      deviceId: 'stream',
      transport: 'mqtt',
      credentials: { sharedAccessKey: key },
      retry: { initialDelayMs: 100, maxDelayMs: 500 },
    });
    device.on('message', (m) => received.set(m.messageId, (received.get(m.messageId) ?? 0) + 1));
    device.open();
    await helper.startServer();
    const { node: cfg, credentials } = configNode(hub, { sendQueueTimeout: 120 });
    const flow = [
      { id: 'tab', type: 'tab' },
      cfg,
      {
        id: 'send',
        z: 'tab',
        x: 1,
        y: 1,
        type: 'iothub-c2d-send',
        connection: 'cfg',
        deviceId: 'stream',
        deviceIdType: 'str',
        ack: 'none',
        ttl: '',
        trackDelivery: false,
        mappings: [{ name: 'messageId', value: 'n-{{n}}', valueType: 'template' }],
        wires: [],
      },
      { id: 'complete', z: 'tab', x: 1, y: 1, type: 'complete', scope: ['send'], uncaught: false, wires: [['ok']] },
      { id: 'catch', z: 'tab', x: 1, y: 1, type: 'catch', scope: ['send'], uncaught: false, wires: [['failed']] },
      { id: 'ok', z: 'tab', x: 1, y: 1, type: 'helper' },
      { id: 'failed', z: 'tab', x: 1, y: 1, type: 'helper' },
    ];
    try {
      await helper.load(nodeModules, flow, credentials);
      // The config node's service client retries fast enough for a test: 1 s first delay.
      const done = new Map();
      const failed = new Map();
      helper.getNode('ok').on('input', (msg) => done.set(msg.n, (done.get(msg.n) ?? 0) + 1));
      const reasons = new Map();
      helper.getNode('failed').on('input', (msg) => {
        failed.set(msg.n, (failed.get(msg.n) ?? 0) + 1);
        const reason = `${msg.error?.code ?? msg.error?.source?.type}: ${msg.error?.message}`;
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      });
      const send = helper.getNode('send');
      let restarts = 0;
      for (let n = 0; n < TOTAL; n++) {
        send.receive({ payload: `m${n}`, n });
        if (n % 200 === 199) await new Promise((r) => setImmediate(r));
        if (n === 3000 || n === 6500) {
          // The second restart waits until every msg sent before the first has ended: each restart then meets sends
          // that the first did not already cut. (A send cut twice before the hub confirmed it fails by design; on a loaded
          // machine the second restart used to fall while the first one's 1,000 resent msgs were still unconfirmed.)
          if (n === 6500)
            await waitFor(
              () => [...Array(3001).keys()].every((k) => done.has(k) || failed.has(k)),
              'the msgs sent before the first restart to end',
              120_000,
            );
          await hub.stop();
          restarts++;
          await new Promise((r) => setTimeout(r, 300));
          hub = await startHub({ dataDir, ports, queueDepth: TOTAL * 2 });
        }
      }
      assert.equal(restarts, 2);
      await waitFor(() => done.size + failed.size === TOTAL, 'every msg to end', 300_000);
      for (let n = 0; n < TOTAL; n++) {
        const count = (done.get(n) ?? 0) + (failed.get(n) ?? 0);
        assert.equal(count, 1, `msg ${n} ended ${count} times`);
      }
      await waitFor(
        () => [...done.keys()].every((n) => received.has(`n-${n}`)),
        'the device to receive every done() message',
        240_000,
      );
      const duplicates = [...received.values()].filter((c) => c > 1).length;
      const failedButDelivered = [...failed.keys()].filter((n) => received.has(`n-${n}`)).length;
      // The numbers behind the issue note.
      console.log(
        `# sent ${TOTAL}, done ${done.size}, failed ${failed.size}, received ${received.size}, duplicates ${duplicates}, failed-but-delivered ${failedButDelivered}, lost 0`,
      );
      for (const [reason, count] of reasons) {
        console.log(`# failed ${count}: ${reason}`);
        // Only the bounded waits may fail a send: for a connection, for the hub's credit, or for its answer.
        assert.match(reason, /^(NOT_CONNECTED|TIMEOUT|CONNECTION_LOST): /);
      }
      assert.ok(done.size >= TOTAL * 0.9, `at least 90 % go through the bounded wait queue (${done.size})`);
    } finally {
      await helper.unload().catch(() => undefined);
      await helper.stopServer();
      await device.close();
      await hub.stop();
    }
  },
);
