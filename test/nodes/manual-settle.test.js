'use strict';
// AMQP devices settle from the flow: complete, reject and abandon, proven by the hub's feedback.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client: ServiceClient } = require('azure-iothub');
const { Message } = require('azure-iot-common');
const { helper, nodeModules, startHub, configNode, waitFor } = require('../support/flows');

function flowFor(hub, transport) {
  const { node: cfg, credentials } = configNode(hub, { deviceTransport: transport });
  const at = (n) => ({ x: 100, y: 100, z: 'tab', ...n });
  return {
    credentials,
    flow: [
      { id: 'tab', type: 'tab' },
      cfg,
      at({
        id: 'send',
        type: 'iothub-c2d-send',
        connection: 'cfg',
        deviceId: 'validator',
        deviceIdType: 'str',
        ack: 'full',
        ttl: '',
        trackDelivery: false,
        mappings: [{ name: 'messageId', value: 'm-{{n}}', valueType: 'template' }],
        wires: [],
      }),
      at({
        id: 'recv',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId: 'validator',
        output: 'json',
        settle: 'manual',
        wires: [['received'], ['settled']],
      }),
      at({ id: 'fb', type: 'iothub-c2d-feedback', connection: 'cfg', split: true, wires: [['feedback']] }),
      at({ id: 'received', type: 'helper' }),
      at({ id: 'settled', type: 'helper' }),
      at({ id: 'feedback', type: 'helper' }),
    ],
  };
}

test('manual settling over AMQP', async (t) => {
  await helper.startServer();
  t.after(() => helper.stopServer());

  for (const transport of ['amqp', 'amqp-ws']) {
    await t.test(
      `${transport}: odd complete, even reject -> Success and Rejected for exactly those; abandon 10 times -> DeliveryCountExceeded`,
      async () => {
        const hub = await startHub({ devices: ['validator'] });
        try {
          const { flow, credentials } = flowFor(hub, transport);
          await helper.load(nodeModules, flow, credentials);
          const recv = helper.getNode('recv');
          const feedback = new Map();
          helper.getNode('feedback').on('input', (msg) => feedback.set(msg.originalMessageId, msg.statusCode));
          const settled = [];
          helper.getNode('settled').on('input', (msg) => settled.push(msg.settled));
          // The "switch": odd numbers complete, even ones reject; n = 0 is abandoned every time.
          helper.getNode('received').on('input', (msg) => {
            const n = msg.payload.n;
            recv.receive({ ...msg, settle: n === 0 ? 'abandon' : n % 2 ? 'complete' : 'reject' });
          });
          const send = helper.getNode('send');
          for (let n = 0; n <= 10; n++) send.receive({ payload: { n }, n });
          await waitFor(() => feedback.size === 11, 'feedback for all 11', 20000);
          for (let n = 1; n <= 10; n++) assert.equal(feedback.get(`m-${n}`), n % 2 ? 'Success' : 'Rejected', `m-${n}`);
          assert.equal(feedback.get('m-0'), 'DeliveryCountExceeded');
          assert.equal(settled.filter((s) => s === 'abandon').length, 10, 'abandoned 10 times');
        } finally {
          await helper.unload().catch(() => undefined);
          await hub.stop();
        }
      },
    );
  }

  await t.test(
    '1,000 messages settled in bursts of 100 per tick, mixed outcomes: feedback counts match exactly; the official SDK as sender',
    async () => {
      const hub = await startHub({ devices: ['validator'], queueDepth: 2000, maxDeliveryCount: 2 });
      const svc = ServiceClient.fromConnectionString(hub.hubConnectionString);
      await svc.open();
      const sdkFeedback = [];
      const receiver = await new Promise((res, rej) => svc.getFeedbackReceiver((e, r) => (e ? rej(e) : res(r))));
      receiver.on('message', (m) => sdkFeedback.push(...JSON.parse(m.data.toString())));
      try {
        const { flow, credentials } = flowFor(hub, 'amqp');
        // The official SDK is the sender here and its feedback receiver competes with ours: drop our feedback node.
        await helper.load(
          nodeModules,
          flow.filter((n) => n.id !== 'fb'),
          credentials,
        );
        const recv = helper.getNode('recv');
        const pending = [];
        helper.getNode('received').on('input', (msg) => pending.push(msg));
        const want = { complete: 0, reject: 0, abandon: 0 };
        const outcomeOf = (n, deliveryCount) =>
          n % 3 === 0 ? 'complete' : n % 3 === 1 ? 'reject' : deliveryCount === 0 ? 'abandon' : 'complete';
        const sends = [];
        // The first send alone: azure-iothub attaches its C2D link on the first send and, when many start together,
        // once per send, each adding an error listener to its SenderLink (11 of them: a MaxListenersExceededWarning).
        for (let n = 0; n < 1000; n++) {
          if (n === 1) await sends[0];
          const m = new Message(JSON.stringify({ n }));
          m.messageId = `s-${n}`;
          m.ack = 'full';
          sends.push(svc.send('validator', m));
        }
        await Promise.all(sends);
        let handled = 0;
        // Settle whatever arrived, 100 per tick, until every message has its final outcome.
        while (handled < 1000 + 333) {
          await waitFor(() => pending.length > 0, 'more deliveries', 20000);
          const burst = pending.splice(0, 100);
          for (const msg of burst) {
            const o = outcomeOf(msg.payload.n, msg.deliveryCount);
            want[o]++;
            recv.receive({ lockToken: msg.lockToken, settle: o });
          }
          handled += burst.length;
          await new Promise((r) => setImmediate(r));
        }
        await waitFor(() => sdkFeedback.length === 1000, 'feedback for all 1000', 30000);
        const counts = sdkFeedback.reduce((a, r) => ({ ...a, [r.statusCode]: (a[r.statusCode] ?? 0) + 1 }), {});
        assert.deepEqual(want, { complete: 334 + 333, reject: 333, abandon: 333 });
        assert.deepEqual(counts, { Success: 667, Rejected: 333 });
        for (const r of sdkFeedback) {
          const n = Number(r.originalMessageId.slice(2));
          assert.equal(r.statusCode, n % 3 === 1 ? 'Rejected' : 'Success', r.originalMessageId);
        }
      } finally {
        await helper.unload().catch(() => undefined);
        await svc.close();
        await hub.stop();
      }
    },
  );
});
