'use strict';
// device receive and the config node in a real Node-RED runtime, against the local hub and the official service SDK.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client: ServiceClient } = require('azure-iothub');
const { Message } = require('azure-iot-common');
const { helper, nodeModules, startHub, configNode, collect, waitFor } = require('../support/flows');

const HOSTILE = 'a & b = c % d + e # f / g é 漢字 🙂';

function receiveFlow(hub, extra = {}, nodes = [{ id: 'recv', deviceId: 'dev1' }]) {
  const { node: cfg, credentials } = configNode(hub, extra);
  const flow = [{ id: 'tab', type: 'tab', label: 'test' }, cfg];
  for (const n of nodes) {
    flow.push({
      id: n.id,
      z: 'tab',
      x: 100,
      y: 100,
      type: 'iothub-device-receive',
      connection: 'cfg',
      deviceId: n.deviceId,
      output: n.output ?? 'auto',
      settle: 'auto',
      wires: [[`${n.id}-out`]],
    });
    flow.push({ id: `${n.id}-out`, z: 'tab', x: 300, y: 100, type: 'helper' });
  }
  return { flow, credentials };
}

async function service(hub) {
  const svc = ServiceClient.fromConnectionString(hub.hubConnectionString);
  await svc.open();
  const feedback = [];
  const r = await new Promise((res, rej) => svc.getFeedbackReceiver((e, x) => (e ? rej(e) : res(x))));
  r.on('message', (m) => feedback.push(...JSON.parse(m.data.toString())));
  return { svc, feedback };
}

test('device receive', async (t) => {
  await helper.startServer();
  t.after(() => helper.stopServer());

  await t.test(
    'the official SDK sends 3 messages; 3 msgs come out with every field exact; feedback Success',
    async () => {
      const hub = await startHub();
      const { svc, feedback } = await service(hub);
      try {
        await hub.registerDevice('dev1');
        const { flow, credentials } = receiveFlow(hub);
        await helper.load(nodeModules, flow, credentials);
        const out = collect(helper.getNode('recv-out'), 3);
        const expiry = Date.now() + 3_600_000;
        for (let i = 0; i < 3; i++) {
          const m = new Message(JSON.stringify({ i, text: HOSTILE }));
          m.messageId = `id ${i} ${HOSTILE}`.slice(0, 60);
          m.correlationId = `corr/${i}#`;
          m.contentType = 'application/json';
          m.contentEncoding = 'utf-8';
          m.expiryTimeUtc = expiry;
          m.ack = 'full';
          m.properties.add('prop & = % + # /', HOSTILE);
          m.properties.add('plain', `v${i}`);
          await svc.send('dev1', m);
        }
        const msgs = await out;
        msgs.forEach((msg, i) => {
          assert.deepEqual(msg.payload, { i, text: HOSTILE });
          assert.equal(msg.topic, 'devices/dev1/messages/devicebound');
          assert.equal(msg.deviceId, 'dev1');
          assert.equal(msg.messageId, `id ${i} ${HOSTILE}`.slice(0, 60));
          assert.equal(msg.correlationId, `corr/${i}#`);
          assert.equal(msg.contentType, 'application/json');
          assert.equal(msg.contentEncoding, 'utf-8');
          assert.equal(msg.ack, 'full');
          assert.equal(msg.expiryTimeUtc, new Date(expiry).toISOString());
          assert.deepEqual(msg.properties, { 'prop & = % + # /': HOSTILE, plain: `v${i}` });
          assert.equal(msg.systemProperties['$.cid'], `corr/${i}#`);
          assert.equal(msg.systemProperties['iothub-ack'], 'full');
        });
        await waitFor(() => feedback.length === 3, 'feedback');
        assert.ok(feedback.every((r) => r.statusCode === 'Success' && r.deviceId === 'dev1'));
        await helper.unload();
      } finally {
        await helper.unload().catch(() => undefined);
        await svc.close();
        await hub.stop();
      }
    },
  );

  await t.test('two nodes for one device share one connection; removing one keeps the other receiving', async () => {
    const hub = await startHub();
    const { svc } = await service(hub);
    try {
      const { flow, credentials } = receiveFlow(hub, {}, [
        { id: 'a', deviceId: 'shared' },
        { id: 'b', deviceId: 'shared' },
      ]);
      await hub.registerDevice('shared');
      await helper.load(nodeModules, flow, credentials);
      const outA = collect(helper.getNode('a-out'), 1);
      const outB = collect(helper.getNode('b-out'), 1);
      await svc.send('shared', new Message('one'));
      assert.equal((await outA)[0].payload, 'one');
      assert.equal((await outB)[0].payload, 'one');
      assert.equal(hub.connectedClients(), 1, 'the hub sees one device connection');
      // Remove node a as a modified-nodes deploy does (close with removed = true): the connection stays for b.
      await helper.getNode('a').close(true);
      const outB2 = collect(helper.getNode('b-out'), 1);
      await svc.send('shared', new Message('two'));
      assert.equal((await outB2)[0].payload, 'two');
      assert.equal(hub.connectedClients(), 1);
      await helper.unload();
      await waitFor(() => hub.connectedClients() === 0, 'disconnect after unload');
    } finally {
      await helper.unload().catch(() => undefined);
      await svc.close();
      await hub.stop();
    }
  });

  await t.test(
    'messages sent while no node is deployed arrive once it is; a hub restart mid-stream loses nothing',
    async () => {
      let hub = await startHub();
      const ports = { ...hub.ports };
      const dataDir = hub.dataDir;
      let svc;
      const { flow, credentials } = receiveFlow(hub, {}, [{ id: 'recv', deviceId: 'later', output: 'string' }]);
      // "later" is unknown until a device connects: register it as the portal would.
      await hub.registerDevice('later');
      ({ svc } = await service(hub));
      for (let i = 0; i < 10; i++) await svc.send('later', new Message(`early ${i}`));
      await svc.close();
      const got = [];
      try {
        await helper.load(nodeModules, flow, credentials);
        helper.getNode('recv-out').on('input', (msg) => got.push(msg.payload));
        await waitFor(() => got.length === 10, 'the 10 queued messages');
        assert.deepEqual(
          got,
          Array.from({ length: 10 }, (_, i) => `early ${i}`),
        );
        // Stop the hub while messages are queued, start it on the same ports and data: the node reconnects and gets them all.
        ({ svc } = await service(hub));
        for (let i = 0; i < 20; i++) await svc.send('later', new Message(`after ${i}`));
        await svc.close();
        await hub.stop();
        hub = await startHub({ dataDir, ports });
        await waitFor(() => got.length === 30, 'the 20 messages queued across the restart', 20000);
        assert.deepEqual(
          got.slice(10),
          Array.from({ length: 20 }, (_, i) => `after ${i}`),
        );
      } finally {
        await helper.unload().catch(() => undefined);
        await hub.stop();
      }
    },
  );

  await t.test(
    'a wrong key shows unauthorized within 5 s and retries no faster than the policy; the key is never shown',
    async () => {
      const refused = [];
      const hub = await startHub({
        log: (level, text) => {
          if (/refused/.test(text)) refused.push(Date.now());
        },
      });
      try {
        const { flow, credentials } = receiveFlow(hub);
        const badKey = Buffer.alloc(32, 7).toString('base64');
        credentials.cfg.connectionString = hub.hubConnectionString.replace(
          /SharedAccessKey=[^;]+/,
          `SharedAccessKey=${badKey}`,
        );
        const started = Date.now();
        await helper.load(nodeModules, flow, credentials);
        const recv = helper.getNode('recv');
        await waitFor(
          () => recv.status.args.some((a) => a[0].text === 'iothub-connection.status.unauthorized'),
          'unauthorized status',
          5000,
        );
        assert.ok(Date.now() - started < 5000);
        // The policy waits 10 s (±20 %) after an authorization failure: two more seconds see no new attempt.
        const attempts = refused.length;
        await new Promise((r) => setTimeout(r, 2000));
        assert.equal(refused.length, attempts, 'no retry storm');
        assert.equal(attempts, 1);
        const texts = JSON.stringify([recv.status.args, recv.warn.args, recv.error.args, helper.log().args]);
        assert.ok(!texts.includes(badKey), 'the key never appears');
        await helper.unload();
      } finally {
        await helper.unload().catch(() => undefined);
        await hub.stop();
      }
    },
  );

  await t.test('a malformed connection string is a clear error without the key; nothing crashes', async () => {
    const hub = await startHub();
    try {
      const { flow, credentials } = receiveFlow(hub);
      const key = 'c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs=';
      credentials.cfg.connectionString = `HostName=x.azure-devices.net;SharedAccessKeyName=;SharedAccessKey=${key}`;
      await helper.load(nodeModules, flow, credentials);
      const cfg = helper.getNode('cfg');
      const recv = helper.getNode('recv');
      await waitFor(() => cfg.error.called, 'config error');
      assert.match(String(cfg.error.args[0][0]), /SharedAccessKeyName is empty/);
      assert.equal(recv.status.lastCall.args[0].fill, 'red');
      const texts = JSON.stringify([cfg.error.args, recv.status.args, recv.error.args, helper.log().args]);
      assert.ok(!texts.includes(key) && !texts.includes(key.slice(0, 10)), 'the key never appears');
      await helper.unload();
    } finally {
      await helper.unload().catch(() => undefined);
      await hub.stop();
    }
  });
});
