'use strict';
// Transport auto: MQTT (AMQP) on its own port when that answers, else over WebSockets. The hub's own ports sit behind
// relays that refuse (nothing listens), drop (accept and say nothing, as a firewall that swallows the handshake) or
// forward; WebSockets go through a relay that can cut. With the own ports closed, devices (auto, amqp-auto) and the back
// end (auto) connect over WebSockets within 10 s and messages flow; with the ports open again, the next reconnect
// takes the own port, because it answers; closed again, the next one goes back to WebSockets.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { helper, nodeModules, startHub, waitFor } = require('../support/flows');
const { faultProxy } = require('../support/fault-proxy');

const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
const own = (node, spy) => spy.getCalls().filter((c) => c.thisValue === node);
const texts = (node) => own(node, node.status).map((c) => String(c.args[0].text));
const last = (node) => texts(node).at(-1) ?? '';

/** A relay on a fixed port in front of targetPort: 'closed' (refuses), 'drop' (accepts, never answers) or 'open'. */
async function switchableRelay(targetPort) {
  const sockets = new Set();
  let mode = 'open';
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (mode === 'drop') return;
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => undefined);
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  const cutAll = () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    port,
    get accepted() {
      return accepted;
    },
    cut: cutAll,
    async set(next) {
      cutAll();
      if (next === 'closed' && server.listening) await new Promise((r) => server.close(r));
      if (next !== 'closed' && !server.listening) await new Promise((r) => server.listen(port, '127.0.0.1', r));
      mode = next;
    },
    async close() {
      cutAll();
      if (server.listening) await new Promise((r) => server.close(r));
    },
  };
}

function autoFlow(hub, ports) {
  const cfg = (id, deviceTransport) => ({
    id,
    type: 'iothub-connection',
    mode: 'azure',
    deviceTransport,
    serviceTransport: 'auto',
    tokenLifetime: 3600,
    mqttPort: ports.mqtt,
    amqpPort: ports.amqp,
    wsPort: ports.ws,
    retry: { initialDelayMs: 100, maxDelayMs: 400 },
  });
  const c = { connectionString: hub.hubConnectionString, ca: hub.caPem };
  return {
    credentials: { cfg: c, cfgA: c },
    flow: [
      { id: 'tab', type: 'tab' },
      cfg('cfg', 'auto'),
      cfg('cfgA', 'amqp-auto'),
      at({
        id: 'rm',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId: 'am',
        output: 'string',
        wires: [['out']],
      }),
      at({
        id: 'ra',
        type: 'iothub-device-receive',
        connection: 'cfgA',
        deviceId: 'aa',
        output: 'string',
        wires: [['out']],
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
      at({ id: 'out', type: 'helper' }),
    ],
  };
}

/** Waits until rm, ra and send all show connected over the given transports; returns how long it took. */
async function connectedVia(nodes, [m, a, s], what, timeoutMs) {
  const started = Date.now();
  const want = [m, a, s].map((v) => `iothub-connection.status.connected (${v})`);
  await waitFor(
    () => nodes.every((n, i) => last(n) === want[i]),
    `${what}: ${want.join(' / ')} (now ${nodes.map(last).join(' / ')})`,
    timeoutMs,
  );
  return Date.now() - started;
}

/** Sends n messages to each device and waits for every one of them (a redelivery after a reconnect may come too). */
async function flows(send, out, n, tag) {
  const before = out.length;
  for (let i = 0; i < n; i++) {
    send.receive({ payload: `${tag} m${i}`, deviceId: 'am' });
    send.receive({ payload: `${tag} a${i}`, deviceId: 'aa' });
  }
  const missing = () => {
    const got = new Set(out.slice(before).map((m) => `${m.deviceId}:${m.payload}`));
    const left = [];
    for (let i = 0; i < n; i++) {
      if (!got.has(`am:${tag} m${i}`)) left.push(`am ${i}`);
      if (!got.has(`aa:${tag} a${i}`)) left.push(`aa ${i}`);
    }
    return left;
  };
  await waitFor(
    () => missing().length === 0,
    `${2 * n} messages (${tag}; missing ${missing().slice(0, 5).join(', ')}; send errors ${JSON.stringify(
      own(send, send.error)
        .slice(0, 2)
        .map((c) => String(c.args[0])),
    )})`,
    20_000,
  );
}

test('transport auto', { timeout: 180_000 }, async (t) => {
  await helper.startServer();
  t.after(async () => {
    await helper.unload().catch(() => undefined);
    await helper.stopServer();
  });

  await t.test(
    'own ports closed: WebSockets within 10 s; opened: the next reconnect takes them; closed again: back to WebSockets',
    async (t) => {
      const hub = await startHub({ devices: ['am', 'aa'], queueDepth: 1000 });
      const mqtt = await switchableRelay(hub.ports.mqtts);
      const amqp = await switchableRelay(hub.ports.amqps);
      const ws = await faultProxy(hub.ports.https);
      try {
        await mqtt.set('closed');
        await amqp.set('closed');
        const { flow, credentials } = autoFlow(hub, { mqtt: mqtt.port, amqp: amqp.port, ws: ws.port });
        await helper.load(nodeModules, flow, credentials);
        const nodes = ['rm', 'ra', 'send'].map((id) => helper.getNode(id));
        const out = [];
        helper.getNode('out').on('input', (m) => out.push(m));

        const wsMs = await connectedVia(nodes, ['MQTT-WS', 'AMQP-WS', 'AMQP-WS'], 'ports closed', 10_000);
        await flows(nodes[2], out, 100, 'closed');

        // The ports answer again: a reconnect (the WebSockets cut) looks at them first and takes them.
        await mqtt.set('open');
        await amqp.set('open');
        const cut = ws.cut();
        const ownMs = await connectedVia(nodes, ['MQTT', 'AMQP', 'AMQP'], 'ports open again', 10_000);
        await flows(nodes[2], out, 100, 'open');
        assert.ok(mqtt.accepted >= 1 && amqp.accepted >= 2, 'the own ports carry the connections');

        // Dropped this time (accepted, never answered): the next reconnect goes back to WebSockets.
        await mqtt.set('drop');
        await amqp.set('drop');
        const backMs = await connectedVia(nodes, ['MQTT-WS', 'AMQP-WS', 'AMQP-WS'], 'ports dropped', 10_000);
        await flows(nodes[2], out, 100, 'dropped');
        t.diagnostic(
          `auto: ports refused → WebSockets in ${wsMs} ms; ${cut} WebSocket connections cut with the ports open → own ports in ${ownMs} ms; ports dropping → WebSockets in ${backMs} ms; 100 messages to each device in each phase`,
        );
        await helper.unload();
      } finally {
        await helper.unload().catch(() => undefined);
        await mqtt.close();
        await amqp.close();
        await ws.close();
        await hub.stop();
      }
    },
  );

  await t.test('own ports that drop from the start: WebSockets within 10 s', async (t) => {
    const hub = await startHub({ devices: ['am', 'aa'], queueDepth: 1000 });
    const mqtt = await switchableRelay(hub.ports.mqtts);
    const amqp = await switchableRelay(hub.ports.amqps);
    try {
      await mqtt.set('drop');
      await amqp.set('drop');
      const { flow, credentials } = autoFlow(hub, { mqtt: mqtt.port, amqp: amqp.port, ws: hub.ports.https });
      await helper.load(nodeModules, flow, credentials);
      const nodes = ['rm', 'ra', 'send'].map((id) => helper.getNode(id));
      const out = [];
      helper.getNode('out').on('input', (m) => out.push(m));
      const ms = await connectedVia(nodes, ['MQTT-WS', 'AMQP-WS', 'AMQP-WS'], 'ports dropping', 10_000);
      await flows(nodes[2], out, 100, 'dropping');
      t.diagnostic(`auto: ports dropping from the start → WebSockets in ${ms} ms`);
      await helper.unload();
    } finally {
      await helper.unload().catch(() => undefined);
      await mqtt.close();
      await amqp.close();
      await hub.stop();
    }
  });
});
