'use strict';
// Redeploys while C2D messages stream in, in a real Node-RED runtime deployed through its admin API.
// (Its own file: a Node-RED runtime starts once per process.)
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startHub, configNode, waitFor } = require('../support/flows');
const { startNodeRed } = require('../../scripts/node-red-runtime');
const { resources: handles, settledTo, adminRequest } = require('../support/runtime');

// Handles, plus every listener on process: a handler registered again on each deploy would show here.
const resources = () => ({
  ...handles(),
  processListeners: process.eventNames().reduce((n, e) => n + process.listenerCount(e), 0),
});

let red;
let userDir;
let outputs;
test.before(async () => {
  userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-redeploy-'));
  red = await startNodeRed({
    userDir,
    credentialSecret: 'test-secret',
    settings: { logging: { console: { level: 'off' } } },
  });
  red.RED.hooks.add('postDeliver.redeploy', (ev) => {
    if (ev.destination.id === 'sink') outputs.set(ev.msg.messageId, (outputs.get(ev.msg.messageId) ?? 0) + 1);
  });
});
test.after(async () => {
  await red.stop();
  fs.rmSync(userDir, { recursive: true, force: true });
});

for (const transport of ['mqtt', 'amqp']) {
  test(
    `${transport} devices: 100 full and modified-nodes deploys under traffic, nothing lost, no duplicated output, handles back to baseline`,
    { timeout: 120_000 },
    async () => {
      const { ServiceClient } = require('../../nodes/core/service-client.js');
      const hub = await startHub({ devices: ['t1', 't2'], queueDepth: 50_000 });
      outputs = new Map();
      const { node: cfg } = configNode(hub, { deviceTransport: transport });
      const credentials = { connectionString: hub.hubConnectionString, ca: hub.caPem };
      const at = (n) => ({ x: 100, y: 100, z: 'tab', ...n });
      const flowWith = (rev) => [
        { id: 'tab', type: 'tab', label: 'redeploy' },
        { ...cfg, name: `hub ${rev.cfg}` },
        at({
          id: 'r1',
          name: `r1 ${rev.r1}`,
          type: 'iothub-device-receive',
          connection: 'cfg',
          deviceId: 't1',
          output: 'string',
          settle: 'auto',
          wires: [['sink']],
        }),
        at({
          id: 'r2',
          name: `r2 ${rev.r2}`,
          type: 'iothub-device-receive',
          connection: 'cfg',
          deviceId: 't2',
          output: 'string',
          settle: 'auto',
          wires: [['sink']],
        }),
        at({ id: 'fb', type: 'iothub-c2d-feedback', connection: 'cfg', split: true, wires: [[]] }),
        at({ id: 'sink', type: 'junction', wires: [] }),
      ];
      const deploy = async (flow, type, withCredentials) => {
        const body = withCredentials ? flow.map((n) => (n.id === 'cfg' ? { ...n, credentials } : n)) : flow;
        const r = await adminRequest(red.port, 'POST', '/flows', body, type);
        assert.equal(r.status, 204, r.text);
      };
      const connected = () => hub.isDeviceConnected('t1') && hub.isDeviceConnected('t2');
      const owner = /SharedAccessKey=([^;]+)/.exec(hub.hubConnectionString)[1];
      const svc = new ServiceClient({
        hostName: 'localhost',
        connectHost: '127.0.0.1',
        port: hub.ports.amqps,
        ca: hub.caPem,
        sharedAccessKeyName: 'iothubowner',
        sharedAccessKey: owner,
      });
      svc.open();
      let sent = 0;
      let sending = true;
      let traffic;
      try {
        // Warm up, then an empty flow: the baseline is a runtime that has run these nodes once and holds none.
        const rev = { cfg: 0, r1: 0, r2: 0 };
        await deploy(flowWith(rev), 'full', true);
        await waitFor(connected, 'devices connected', 15_000);
        await deploy([], 'full');
        await waitFor(() => hub.connectedClients() === 0, 'devices disconnected');
        await new Promise((r) => setTimeout(r, 300));
        const baseline = resources();
        await deploy(flowWith(rev), 'full', true);
        await waitFor(connected, 'devices connected', 15_000);
        traffic = (async () => {
          while (sending) {
            const burst = [];
            for (let k = 0; k < 10; k++, sent++)
              burst.push(
                svc.send(sent % 2 ? 't1' : 't2', {
                  body: Buffer.from(`m${sent}`),
                  messageId: `m${sent}`,
                  properties: {},
                }),
              );
            await Promise.all(burst);
            await new Promise((r) => setTimeout(r, 2));
          }
        })();
        const kinds = { full: 0, nodes: 0 };
        for (let i = 1; i <= 100; i++) {
          // Full deploys restart everything; modified-nodes deploys restart one receive node, or the config node and all of it.
          const type = i % 2 ? 'full' : 'nodes';
          if (type === 'nodes') rev[['r1', 'r2', 'cfg'][(i / 2) % 3]]++;
          kinds[type]++;
          const seen = outputs.size;
          await deploy(flowWith(rev), type);
          await waitFor(connected, `devices connected after deploy ${i}`, 15_000);
          // Let messages flow through each deployed flow before the next deploy.
          await waitFor(() => outputs.size >= seen + 50, `traffic through deploy ${i}`, 15_000);
        }
        sending = false;
        await traffic;
        await waitFor(() => outputs.size === sent, `all ${sent} sent messages output`, 30_000).catch(() => undefined);
        const lost = [...Array(sent).keys()].filter((i) => !outputs.has(`m${i}`));
        const duplicated = [...outputs.values()].reduce((a, c) => a + c - 1, 0);
        // After all that, one message is one output: no handler was registered twice.
        const before = new Map(outputs);
        for (let i = 0; i < 20; i++)
          await svc.send(i % 2 ? 't1' : 't2', { body: Buffer.from('after'), messageId: `after${i}`, properties: {} });
        await waitFor(() => [...Array(20).keys()].every((i) => outputs.has(`after${i}`)), 'the last 20 output');
        await new Promise((r) => setTimeout(r, 300));
        const after = [...outputs].filter(([k]) => !before.has(k));
        await deploy([], 'full');
        await waitFor(() => hub.connectedClients() === 0, 'every device connection closed');
        const now = await settledTo(baseline, resources);
        console.log(
          `# ${transport} deploys: ${kinds.full} full, ${kinds.nodes} modified nodes; sent ${sent}, delivered ${outputs.size - 20}, duplicated ${duplicated}, lost ${lost.length}; handles baseline ${JSON.stringify(baseline)}, after ${JSON.stringify(now)}`,
        );
        assert.deepEqual(lost.slice(0, 10), [], 'nothing lost');
        assert.ok(
          duplicated <= sent / 100,
          `duplicates stay rare redeliveries (${duplicated} of ${sent}), not a handler registered twice`,
        );
        assert.deepEqual(
          after.map(([, n]) => n),
          Array(20).fill(1),
          'exactly one output per message after 100 deploys',
        );
        assert.deepEqual(now, baseline, 'every handle back to baseline');
      } finally {
        sending = false;
        await traffic?.catch(() => undefined);
        await svc.close();
        await deploy([], 'full').catch(() => undefined);
        await hub.stop();
      }
    },
  );
}
