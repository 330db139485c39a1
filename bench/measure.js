'use strict';
// One measurement per process (node bench/measure.js <case>), so each client starts cold and alone.
// The hub's details come in HUB (JSON); NODE_EXTRA_CA_CERTS makes the official SDKs trust it.
const hub = JSON.parse(process.env.HUB);
const N = Number(process.env.BENCH_N || 2000);
// The receive cases drain a queue of this depth (the issue asks for 5,000; more for profiling).
const RECV_N = Number(process.env.BENCH_RECV_N || 5000);
// ... after this many drained untimed: every client is measured warm (JIT), as in the send cases.
const RECV_WARM = Number(process.env.BENCH_RECV_WARM || 5000);
// Send cases first send this many untimed, so each client is measured warm (JIT, buffers, link credit), not starting.
const WARM = Number(process.env.BENCH_WARM || 1000);
// The send cases run longer (a 2,000-msg run lasts ~0.1 s, mostly ramp-up): this many timed after SEND_WARM untimed.
const SEND_N = Number(process.env.BENCH_SEND_N || 10000);
const SEND_WARM = Number(process.env.BENCH_SEND_WARM || 5000);
// The loaded latency case: this many probes, one at a time, beside the background traffic.
const LOADED_PROBES = Number(process.env.BENCH_LOADED_PROBES || 2000);
const hubKey = /SharedAccessKey=([^;]+)/.exec(hub.hubConnectionString)[1];
const { createSasToken } = require('../nodes/core/sas.js');
const { ServiceClient } = require('../nodes/core/service-client.js');
const { DeviceClient } = require('../nodes/core/device-client.js');

const devStr = (id) =>
  `HostName=localhost:${hub.ports.mqtts};DeviceId=${id};SharedAccessKeyName=iothubowner;SharedAccessKey=${hubKey}`;
const until = (pred) =>
  new Promise((resolve) => {
    const t = () => (pred() ? resolve() : setTimeout(t, 1));
    t();
  });

async function ourService() {
  const s = new ServiceClient({
    hostName: 'localhost',
    connectHost: '127.0.0.1',
    port: hub.ports.amqps,
    ca: hub.caPem,
    sharedAccessKeyName: 'iothubowner',
    sharedAccessKey: hubKey,
  });
  s.open();
  await new Promise((r) => s.on('status', (e) => e.state === 'connected' && r()));
  return s;
}

async function ourDevice(id, onMessage) {
  const d = new DeviceClient({
    hostName: 'localhost',
    connectHost: '127.0.0.1',
    port: hub.ports.mqtts,
    ca: hub.caPem,
    deviceId: id,
    transport: 'mqtt',
    credentials: { sharedAccessKey: hubKey, sharedAccessKeyName: 'iothubowner' },
  });
  d.on('message', onMessage);
  d.open();
  await new Promise((r) => d.on('status', (e) => e.state === 'connected' && r()));
  return d;
}

async function prefill(id, n) {
  // The device must exist: connect it once (auto-register), then fill its queue while it is away.
  const d = await ourDevice(id, () => undefined);
  await d.close();
  const s = await ourService();
  // In batches: the client keeps at most 10,000 sends waiting.
  for (let from = 0; from < n; from += 5000) {
    await Promise.all(
      Array.from({ length: Math.min(5000, n - from) }, (_, j) =>
        s.send(id, { body: Buffer.from(`m${from + j}`), messageId: `m${from + j}`, properties: {} }),
      ),
    );
  }
  await s.close();
}

/**
 * Who is busy during a timed part: this process's CPU (GC threads included) and the hub process's CPU (from /proc,
 * 10 ms ticks), per message. On a machine with 2 cores, a rate can be at most 2 / (client + hub CPU per message).
 */
function cpuMeter() {
  const fs = require('node:fs');
  const hubTicks = () => {
    try {
      const f = fs.readFileSync(`/proc/${hub.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return Number(f[11]) + Number(f[12]);
    } catch {
      return NaN;
    }
  };
  const c0 = process.cpuUsage();
  const h0 = hubTicks();
  const t0 = performance.now();
  return (n) => {
    const wallMs = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const hubMs = (hubTicks() - h0) * 10;
    return {
      client_cpu_share: (c.user + c.system) / 1000 / wallMs,
      hub_cpu_share: hubMs / wallMs,
      client_us_per_msg: (c.user + c.system) / n,
      hub_us_per_msg: (hubMs * 1000) / n,
    };
  };
}

/** Empties a device's queue through the hub's REST API (as a real hub's purge), so every run meets the same hub. */
function purge(id) {
  const https = require('node:https');
  const token = createSasToken({
    resourceUri: 'localhost',
    key: hubKey,
    keyName: 'iothubowner',
    expiresAt: Date.now() / 1000 + 3600,
  });
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: hub.ports.https,
        servername: 'localhost',
        ca: hub.caPem,
        method: 'DELETE',
        path: `/devices/${encodeURIComponent(id)}/commands?api-version=2021-04-12`,
        headers: { authorization: token },
      },
      (res) => {
        res
          .resume()
          .on('end', () =>
            res.statusCode === 200 ? resolve() : reject(new Error(`purge ${id}: HTTP ${res.statusCode}`)),
          );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** Bare rhea, as a user of it alone would connect: one connection, a CBS token, a sender with its first credit. */
async function bareRheaSender() {
  const rhea = require('rhea');
  const c = rhea.create_container().connect({
    host: '127.0.0.1',
    port: hub.ports.amqps,
    transport: 'tls',
    ca: hub.caPem,
    servername: 'localhost',
    hostname: 'localhost',
    reconnect: false,
  });
  await new Promise((r) => c.once('connection_open', r));
  const cbsOut = c.open_sender('$cbs');
  const cbsIn = c.open_receiver('$cbs');
  const token = createSasToken({
    resourceUri: 'localhost',
    key: hubKey,
    keyName: 'iothubowner',
    expiresAt: Date.now() / 1000 + 3600,
  });
  await new Promise((r) => {
    cbsIn.once('message', r);
    cbsOut.once('sendable', () =>
      cbsOut.send({
        message_id: 'put',
        reply_to: 'cbs',
        body: token,
        application_properties: {
          operation: 'put-token',
          type: 'servicebus.windows.net:sastoken',
          name: 'localhost',
        },
      }),
    );
  });
  const sender = c.open_sender({ target: { address: '/messages/devicebound' } });
  await new Promise((r) => sender.once('sendable', r));
  return { rhea, c, sender };
}

/**
 * A real embedded Node-RED (what users run), the flow deployed through the admin API. Events come from
 * the runtime: the onComplete hook for done(), an input listener on the receiving node; msgs go in with node.receive().
 */
async function nodeRuntime(flow, creds) {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const http = require('node:http');
  const { startNodeRed } = require('../scripts/node-red-runtime');
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-bench-nr-'));
  const red = await startNodeRed({ userDir, logLevel: 'error', credentialSecret: 'bench' });
  const deploy = async (flow) => {
    const body = JSON.stringify(flow.map((n) => (creds[n.id] ? { ...n, credentials: creds[n.id] } : n)));
    await new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: red.port,
          method: 'POST',
          path: '/flows',
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'Node-RED-Deployment-Type': 'full',
          },
        },
        (res) =>
          res
            .resume()
            .on('end', () => (res.statusCode === 204 ? resolve() : reject(new Error(`deploy ${res.statusCode}`)))),
      );
      req.on('error', reject);
      req.end(body);
    });
    const ids = flow.filter((n) => n.z).map((n) => n.id);
    await until(() => ids.every((id) => red.RED.nodes.getNode(id)));
  };
  await deploy(flow);
  const handlers = { complete: new Map(), status: new Map() };
  red.RED.events.on('node-status', (ev) => handlers.status.get('*')?.(ev.id, ev.status));
  return {
    /** A full deploy of another flow (the same credentials), resolved once its nodes exist. */
    deploy,
    getNode: (id) => red.RED.nodes.getNode(id),
    // A hook runs for every message in the runtime, so it is added only where done() must be seen.
    onComplete: (id, fn) => {
      if (handlers.complete.size === 0)
        red.RED.hooks.add('onComplete.bench', (ev) => handlers.complete.get(ev.node.id)?.(ev.msg));
      handlers.complete.set(id, fn);
    },
    // What reaches a node's input, seen as the node itself sees it.
    onInput: (id, fn) => red.RED.nodes.getNode(id).on('input', (msg) => fn(msg)),
    onStatus: (fn) => handlers.status.set('*', fn),
    stop: async () => {
      await red.stop();
      fs.rmSync(userDir, { recursive: true, force: true });
    },
  };
}

function cfgNode() {
  return {
    node: {
      id: 'cfg',
      type: 'iothub-connection',
      mode: 'azure',
      deviceTransport: 'mqtt',
      serviceTransport: 'amqp',
      tokenLifetime: 3600,
      mqttPort: hub.ports.mqtts,
      amqpPort: hub.ports.amqps,
      wsPort: hub.ports.https,
    },
    creds: { cfg: { connectionString: hub.hubConnectionString, ca: hub.caPem } },
  };
}
const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });

/** The c2d send node of the bench flows: to device `id`, no expiry, no tracking, no property mappings. */
const sendNode = (id, ack) =>
  at({
    id: 'send',
    type: 'iothub-c2d-send',
    connection: 'cfg',
    deviceId: id,
    deviceIdType: 'str',
    ack,
    ttl: '',
    trackDelivery: false,
    mappings: [],
    wires: [],
  });
/** The device receive node of the bench flows: device `id`, settled automatically, wired to `to`. */
const recvNode = (id, output, to) =>
  at({
    id: 'recv',
    type: 'iothub-device-receive',
    connection: 'cfg',
    deviceId: id,
    output,
    settle: 'auto',
    wires: [[to]],
  });

/** Bare mqtt.js as an IoT Hub device (SAS password, clean: false, C2D subscription), nothing else: the ceiling. */
function bareMqttDevice(id, onMessage) {
  const mqtt = require('mqtt');
  const token = createSasToken({
    resourceUri: `localhost/devices/${id}`,
    key: hubKey,
    keyName: 'iothubowner',
    expiresAt: Date.now() / 1000 + 3600,
  });
  const c = mqtt.connect(`mqtts://127.0.0.1:${hub.ports.mqtts}`, {
    clientId: id,
    username: `localhost/${id}/?api-version=2021-04-12`,
    password: token,
    clean: false,
    protocolVersion: 4,
    ca: hub.caPem,
    servername: 'localhost',
    reconnectPeriod: 0,
  });
  c.on('message', onMessage);
  c.on('connect', () => c.subscribe(`devices/${id}/messages/devicebound/#`, { qos: 1 }));
  return c;
}

/** The latency flow: inject -> c2d send (ack none) -> hub -> device receive -> sink; arrivals.probe / .other see the sink. */
async function latencyFlow(id) {
  const { node, creds } = cfgNode();
  const helper = await nodeRuntime(
    [
      { id: 'tab', type: 'tab' },
      node,
      sendNode(id, 'none'),
      recvNode(id, 'string', 'sink'),
      at({ id: 'sink', type: 'junction', wires: [] }),
    ],
    creds,
  );
  const arrivals = { probe: () => undefined, other: () => undefined };
  helper.onInput('sink', (msg) => (msg.payload.startsWith('p') ? arrivals.probe(msg.payload) : arrivals.other()));
  return { helper, send: helper.getNode('send'), arrivals };
}

/**
 * Sends count probes one at a time and returns the inject -> sink times of all but the first `skip`, sorted. gapMs
 * spaces the probes (loaded runs: so that each meets the traffic at a different moment).
 */
async function probe(send, arrivals, count, skip, gapMs = 0) {
  const samples = [];
  for (let i = 0; i < count; i++) {
    const got = new Promise((r) => {
      arrivals.probe = (payload) => payload === `p${i}` && r();
    });
    const t0 = performance.now();
    send.receive({ payload: `p${i}` });
    await got;
    if (i >= skip) samples.push(performance.now() - t0);
    if (gapMs) await sleep(gapMs);
  }
  return samples.sort((a, b) => a - b);
}

// The scale cases: how long they wait for all devices, how long they sit idle (CPU per idle device), how long for the messages.
const SCALE_CAP_S = Number(process.env.BENCH_SCALE_CAP_S || 180);
const SCALE_IDLE_S = Number(process.env.BENCH_SCALE_IDLE_S || 30);
const SCALE_ARRIVE_CAP_S = Number(process.env.BENCH_SCALE_ARRIVE_CAP_S || 120);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hubRssMb = () => {
  try {
    return (
      Number(/VmRSS:\s+(\d+) kB/.exec(require('node:fs').readFileSync(`/proc/${hub.pid}/status`, 'utf8'))[1]) / 1024
    );
  } catch {
    return NaN;
  }
};
const hubCpuMs = () => {
  try {
    const f = require('node:fs').readFileSync(`/proc/${hub.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
};
/** RSS after full collections: what the process holds, not garbage waiting. */
const settledRss = () => {
  global.gc?.();
  global.gc?.();
  return process.memoryUsage().rss;
};
/** Counts MQTT connection attempts (every new client, every reconnect) of one copy of mqtt.js (v5: connect, v4: _setupStream). */
function countAttempts(mqtt) {
  const proto = mqtt.MqttClient.prototype;
  const name = typeof proto.connect === 'function' ? 'connect' : '_setupStream';
  const connect = proto[name];
  let count = 0;
  proto[name] = function (...args) {
    count++;
    return connect.apply(this, args);
  };
  return () => count;
}
/** A line before the result: if the process dies (out of memory), run.js still knows how far it got. */
const progress = (o) => process.stdout.write(JSON.stringify({ progress: true, ...o }) + '\n');

/**
 * n devices by one client kind: `start(ids, onMessage)` opens them all at once and returns connected() (how many are
 * up), connectedIds() and extra() (the kind's own counters). Measures the time until all are connected (or where it
 * stops: SCALE_CAP_S, or the heap nearly full), RSS per device, CPU per idle device, then one C2D message to every
 * connected device, sent by our ServiceClient, and the time until all arrived.
 */
async function scaleRun(kind, n, attempts, start) {
  const v8 = require('node:v8');
  const ids = Array.from({ length: n }, (_, i) => `scale-${kind}-${i}`);
  let got = 0;
  const rss0 = settledRss();
  const mem0 = process.memoryUsage();
  const hubRss0 = hubRssMb();
  const connectCpu0 = process.cpuUsage();
  const connectHubCpu0 = hubCpuMs();
  // BENCH_PROFILE=dir: a CPU profile of the connect phase alone (scale-<kind>-connect.cpuprofile).
  const stopProfile = await startProfile(`scale-${kind}-connect`, 1000);
  const t0 = performance.now();
  const c = await start(ids, () => got++);
  let stoppedBy = null;
  let lastProgress = t0;
  await until(() => {
    const now = performance.now();
    if (now - lastProgress > 5000) {
      lastProgress = now;
      const h = v8.getHeapStatistics();
      progress({
        kind,
        n,
        connected: c.connected(),
        s: (now - t0) / 1000,
        attempts: attempts(),
        rss_mb: process.memoryUsage().rss / 2 ** 20,
        ...c.extra(),
      });
      if (h.used_heap_size > 0.9 * h.heap_size_limit)
        stoppedBy = `heap ${Math.round(h.used_heap_size / 2 ** 20)} of ${Math.round(h.heap_size_limit / 2 ** 20)} MB`;
    }
    if (c.connected() >= n) return true;
    if ((now - t0) / 1000 > SCALE_CAP_S) stoppedBy = `${SCALE_CAP_S} s cap`;
    return stoppedBy !== null;
  });
  const connectS = (performance.now() - t0) / 1000;
  const connected = c.connected();
  const attemptsToConnect = attempts();
  // Who was busy while they connected (2 cores: this process and the hub's).
  const connectCpu = process.cpuUsage(connectCpu0);
  const connectHubCpuS = (hubCpuMs() - connectHubCpu0) / 1000;
  await stopProfile();
  progress({ kind, n, connected, connect_s: connectS, stopped_by: stoppedBy });
  // A second for the last subscriptions and status redraws to finish, then what the devices hold.
  await sleep(1000);
  const rss1 = settledRss();
  const mem1 = process.memoryUsage();
  // BENCH_HEAPSNAP=file: a heap snapshot of the connected devices (what each holds, by constructor).
  if (process.env.BENCH_HEAPSNAP) require('node:v8').writeHeapSnapshot(process.env.BENCH_HEAPSNAP);
  const hubRss1 = hubRssMb();
  // Idle: nothing sent or received; keepalive PINGs (every 180 s) fall outside a window shorter than that.
  const cpu0 = process.cpuUsage();
  const hubCpu0 = hubCpuMs();
  await sleep(SCALE_IDLE_S * 1000);
  const idle = process.cpuUsage(cpu0);
  const hubIdleMs = hubCpuMs() - hubCpu0;
  const perMin = 60 / SCALE_IDLE_S;
  // One message to every connected device.
  const to = c.connectedIds();
  const s = await ourService();
  const t1 = performance.now();
  for (let from = 0; from < to.length; from += 5000) {
    await Promise.all(to.slice(from, from + 5000).map((id) => s.send(id, { body: Buffer.from('hi'), properties: {} })));
  }
  const sentS = (performance.now() - t1) / 1000;
  await until(() => got >= to.length || (performance.now() - t1) / 1000 > SCALE_ARRIVE_CAP_S);
  const arrivedS = (performance.now() - t1) / 1000;
  return {
    kind,
    n,
    connected,
    connect_s: connectS,
    stopped_by: stoppedBy,
    attempts: attemptsToConnect,
    connect_cpu_s: (connectCpu.user + connectCpu.system) / 1e6,
    connect_hub_cpu_s: connectHubCpuS,
    rss_mb_before: rss0 / 2 ** 20,
    rss_mb_after: rss1 / 2 ** 20,
    // Per device only over devices that connected: none connected is no figure, not the whole process's growth.
    rss_kb_per_device: connected > 0 ? (rss1 - rss0) / 1024 / connected : null,
    // Where it is: the JS heap, and memory outside it (TLS and socket buffers held by JS objects).
    heap_kb_per_device: connected > 0 ? (mem1.heapUsed - mem0.heapUsed) / 1024 / connected : null,
    external_kb_per_device: connected > 0 ? (mem1.external - mem0.external) / 1024 / connected : null,
    hub_rss_mb_before: hubRss0,
    hub_rss_mb: hubRss1,
    idle_s: SCALE_IDLE_S,
    idle_cpu_us_per_device_min: connected > 0 ? ((idle.user + idle.system) / connected) * perMin : null,
    hub_idle_cpu_us_per_device_min: connected > 0 ? ((hubIdleMs * 1000) / connected) * perMin : null,
    sent: to.length,
    sent_s: sentS,
    arrived: got,
    all_arrived_s: got >= to.length ? arrivedS : null,
    ...c.extra(),
  };
}

/** BENCH_PROFILE=dir: starts a CPU profile (sampled every intervalUs) and returns what stops it and writes dir/name.cpuprofile. */
async function startProfile(name, intervalUs = 100) {
  if (!process.env.BENCH_PROFILE) return async () => undefined;
  const inspector = require('node:inspector');
  const session = new inspector.Session();
  session.connect();
  const post = (method, params) =>
    new Promise((res, rej) => session.post(method, params, (e, r) => (e ? rej(e) : res(r))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: intervalUs });
  await post('Profiler.start');
  return async () => {
    const { profile } = await post('Profiler.stop');
    require('node:fs').mkdirSync(process.env.BENCH_PROFILE, { recursive: true });
    require('node:fs').writeFileSync(
      require('node:path').join(process.env.BENCH_PROFILE, `${name}.cpuprofile`),
      JSON.stringify(profile),
    );
    session.disconnect();
  };
}

/** BENCH_PROFILE=dir: a CPU profile of just the timed part of a case (where the time goes when a goal is missed). */
async function profiled(name, fn) {
  const stop = await startProfile(name);
  try {
    return await fn();
  } finally {
    await stop();
  }
}

/**
 * A send case's measurement: SEND_WARM sent untimed (JIT, buffers, link credit), the device's queue purged, SEND_N timed
 * (rate, and CPU per message of the client and the hub), the queue purged again. round(count) sends count and settles.
 */
async function timedSends(name, id, round) {
  await round(SEND_WARM);
  await purge(id);
  const t0 = performance.now();
  const cpu = cpuMeter();
  await profiled(name, () => round(SEND_N));
  const rate = SEND_N / ((performance.now() - t0) / 1000);
  const busy = cpu(SEND_N);
  await purge(id);
  return { rate, ...busy };
}

const cases = {
  async 'sdk-send'(inflight) {
    const { Client } = require('azure-iothub');
    const { Message } = require('azure-iot-common');
    const c = Client.fromConnectionString(hub.hubConnectionString);
    await c.open();
    const id = `sdk-send-${inflight}`;
    await (await ourDevice(id, () => undefined)).close();
    const round = async (count) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: inflight }, async () => {
          while (next < count) {
            next++;
            await c.send(id, new Message('x'));
          }
        }),
      );
    };
    const result = await timedSends(`sdk-send-${inflight}`, id, round);
    await c.close();
    return result;
  },
  async 'sdk-e2e'() {
    // The local hub's own throughput: official service SDK -> hub -> official device SDK, ack=full, 100 in flight.
    const { Client } = require('azure-iothub');
    const { Message } = require('azure-iot-common');
    const id = 'sdk-e2e';
    const dev = require('azure-iot-device').Client.fromConnectionString(
      devStr(id),
      require('azure-iot-device-mqtt').Mqtt,
    );
    dev.setOptions({ ca: hub.caPem });
    let got = 0;
    dev.on('message', (m) => {
      got++;
      dev.complete(m, () => undefined);
    });
    await dev.open();
    const svc = Client.fromConnectionString(hub.hubConnectionString);
    await svc.open();
    let feedback = 0;
    const fr = await new Promise((res, rej) => svc.getFeedbackReceiver((e, r) => (e ? rej(e) : res(r))));
    // Count only this case's records: the hub's one feedback queue also holds those of earlier cases.
    let lastFeedbackAt = performance.now();
    fr.on('message', (m) => {
      lastFeedbackAt = performance.now();
      feedback += JSON.parse(m.data.toString()).filter((r) => /^e2e-/.test(r.originalMessageId)).length;
    });
    // Earlier cases leave feedback in the hub's one queue (purged ack=full sends): let it drain before timing.
    await until(() => performance.now() - lastFeedbackAt > 300);
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        while (next < N) {
          const m = new Message(`e${next}`);
          m.messageId = `e2e-${next++}`;
          m.ack = 'full';
          await svc.send(id, m);
        }
      }),
    );
    await until(() => got === N);
    const rate = N / ((performance.now() - t0) / 1000);
    await until(() => feedback === N);
    const withFeedback = N / ((performance.now() - t0) / 1000);
    await svc.close();
    await dev.close();
    return { rate, with_feedback_rate: withFeedback };
  },
  async 'rhea-send'() {
    const s = await ourService();
    const id = 'rhea-send';
    await (await ourDevice(id, () => undefined)).close();
    const round = (count) =>
      Promise.all(
        Array.from({ length: count }, (_, i) =>
          s.send(id, { body: Buffer.from('x'), messageId: `r${i}`, properties: {} }),
        ),
      );
    const result = await timedSends('core-send', id, round);
    await s.close();
    return { ...result, note: 'our core ServiceClient on rhea: the ceiling for the node' };
  },
  async 'bare-rhea-send'() {
    // rhea alone: one connection, CBS token, a sender, N messages, every disposition awaited. Nothing else.
    const id = 'bare-rhea-send';
    await (await ourDevice(id, () => undefined)).close();
    const { rhea, c, sender } = await bareRheaSender();
    let settled = 0;
    sender.on('accepted', () => settled++);
    sender.on('rejected', (ctx) => {
      throw new Error(`rejected: ${JSON.stringify(ctx.delivery.remote_state)}`);
    });
    const to = `/devices/${id}/messages/devicebound`;
    let next = 0;
    let target = 0;
    const pump = () => {
      while (next < target && sender.sendable())
        sender.send({ to, message_id: `b${next++}`, body: rhea.message.data_section(Buffer.from('x')) });
    };
    sender.on('sendable', pump);
    const round = async (count) => {
      target += count;
      pump();
      await until(() => settled === target);
    };
    const result = await timedSends('bare-rhea-send', id, round);
    c.close();
    return result;
  },
  async 'rhea-node-floor'() {
    // The least any Node-RED send node on rhea can cost, measured as node-send is: msgs into a node of a real runtime, all
    // at once, whose input handler only queues them, sends each with bare rhea (as bare-rhea-send) as credit allows, and
    // calls done() when the hub accepts it. No message building, ids, checks or tracking: what is left over
    // bare-rhea-send is Node-RED's own cost (a msg's input, closures and done), and where node_cpu_vs_bare's limit is.
    const id = 'rhea-node-floor';
    await (await ourDevice(id, () => undefined)).close();
    const { rhea, c, sender } = await bareRheaSender();
    const helper = await nodeRuntime([{ id: 'tab', type: 'tab' }, at({ id: 'j', type: 'junction', wires: [] })], {});
    const j = helper.getNode('j');
    let done = 0;
    helper.onComplete('j', () => done++);
    const to = `/devices/${id}/messages/devicebound`;
    let waiting = [];
    let head = 0;
    let sent = 0;
    const pump = () => {
      while (head < waiting.length && sender.sendable()) {
        const d = sender.send({ to, message_id: `f${sent++}`, body: rhea.message.data_section(Buffer.from('x')) });
        d.nodeDone = waiting[head];
        waiting[head++] = undefined;
      }
      if (head === waiting.length) {
        waiting = [];
        head = 0;
      }
    };
    sender.on('sendable', pump);
    sender.on('accepted', (ctx) => ctx.delivery.nodeDone());
    sender.on('rejected', (ctx) => {
      throw new Error(`rejected: ${JSON.stringify(ctx.delivery.remote_state)}`);
    });
    // The junction's own handler (send on, done) gives way to the floor's.
    j.removeAllListeners('input');
    j.on('input', (_msg, _send, nodeDone) => {
      waiting.push(nodeDone);
      pump();
    });
    let target = 0;
    const round = async (count) => {
      target += count;
      for (let i = 0; i < count; i++) j.receive({ payload: 'x' });
      await until(() => done === target);
    };
    const result = await timedSends('rhea-node-floor', id, round);
    c.close();
    await helper.stop();
    return result;
  },
  async 'node-send'(ack) {
    const id = `node-send-${ack}`;
    await (await ourDevice(id, () => undefined)).close();
    const { node, creds } = cfgNode();
    const helper = await nodeRuntime([{ id: 'tab', type: 'tab' }, node, sendNode(id, ack)], creds);
    // Warm the connection with one message.
    let done = 0;
    // BENCH_NODE_WINDOW=100: a new msg goes in as each one completes (as the SDK case keeps 100 in flight); by default
    // all at once, as fast as the node takes them.
    const window = Number(process.env.BENCH_NODE_WINDOW || 0);
    let injected = 0;
    let target = 0;
    const send = helper.getNode('send');
    const inject = () => {
      injected++;
      send.receive({ payload: 'x' });
    };
    helper.onComplete('send', () => {
      done++;
      if (window && injected < target) inject();
    });
    const round = async (count) => {
      target += count;
      while (injected < target && (!window || injected - done < window)) inject();
      await until(() => done === target);
    };
    await round(1);
    const result = await timedSends(`node-send-${ack}`, id, round);
    await helper.stop();
    return result;
  },
  async 'sdk-receive'() {
    const id = 'sdk-recv';
    await prefill(id, RECV_WARM + RECV_N);
    const { Client } = require('azure-iot-device');
    const { Mqtt } = require('azure-iot-device-mqtt');
    const d = Client.fromConnectionString(devStr(id), Mqtt);
    d.setOptions({ ca: hub.caPem });
    let got = 0;
    let t0;
    let cpu;
    d.on('message', (m) => {
      if (got++ === RECV_WARM) {
        t0 = performance.now();
        cpu = cpuMeter();
      }
      d.complete(m, () => undefined);
    });
    await d.open();
    await until(() => got === RECV_WARM + RECV_N);
    const rate = (RECV_N - 1) / ((performance.now() - t0) / 1000);
    const busy = cpu(RECV_N - 1);
    await d.close();
    return { rate, ...busy };
  },
  async 'mqtt-receive'() {
    const id = 'mqtt-recv';
    await prefill(id, RECV_WARM + RECV_N);
    let got = 0;
    let t0;
    let cpu;
    const c = bareMqttDevice(id, () => {
      if (got++ === RECV_WARM) {
        t0 = performance.now();
        cpu = cpuMeter();
      }
    });
    await until(() => got === RECV_WARM + RECV_N);
    const rate = (RECV_N - 1) / ((performance.now() - t0) / 1000);
    const busy = cpu(RECV_N - 1);
    await new Promise((r) => c.end(false, {}, r));
    return { rate, ...busy };
  },
  async 'mqtt-node-floor'() {
    // The least any Node-RED receive node on mqtt.js can cost: bare mqtt.js (as mqtt-receive) handing each message to
    // node.send() of a node in a real runtime, wired to a junction. No IoT Hub decoding, no msg beyond topic and
    // payload: what is left over mqtt-receive is Node-RED's own routing.
    const id = 'mqtt-floor';
    await prefill(id, RECV_WARM + RECV_N);
    const helper = await nodeRuntime(
      [
        { id: 'tab', type: 'tab' },
        at({ id: 'src', type: 'junction', wires: [['sink']] }),
        at({ id: 'sink', type: 'junction', wires: [] }),
      ],
      {},
    );
    const src = helper.getNode('src');
    let got = 0;
    let t0;
    let cpu;
    helper.onInput('sink', () => {
      if (got++ === RECV_WARM) {
        t0 = performance.now();
        cpu = cpuMeter();
      }
    });
    const c = bareMqttDevice(id, (topic, payload) => src.send({ topic, payload }));
    await profiled('mqtt-node-floor', () => until(() => got === RECV_WARM + RECV_N));
    const rate = (RECV_N - 1) / ((performance.now() - t0) / 1000);
    const busy = cpu(RECV_N - 1);
    await new Promise((r) => c.end(false, {}, r));
    await helper.stop();
    return { rate, ...busy };
  },
  async 'core-receive'() {
    // Our core DeviceClient alone: the ceiling for the device receive node.
    const id = 'core-recv';
    await prefill(id, RECV_WARM + RECV_N);
    let got = 0;
    let t0;
    let cpu;
    const d = await ourDevice(id, () => {
      if (got++ === RECV_WARM) {
        t0 = performance.now();
        cpu = cpuMeter();
      }
    });
    await profiled('core-receive', () => until(() => got === RECV_WARM + RECV_N));
    const rate = (RECV_N - 1) / ((performance.now() - t0) / 1000);
    const busy = cpu(RECV_N - 1);
    await d.close();
    return { rate, ...busy };
  },
  async 'node-receive'() {
    const id = 'node-recv';
    await prefill(id, RECV_WARM + RECV_N);
    const { node, creds } = cfgNode();
    let got = 0;
    let t0;
    let cpu;
    const helper = await nodeRuntime(
      [{ id: 'tab', type: 'tab' }, node, recvNode(id, 'auto', 'sink'), at({ id: 'sink', type: 'junction', wires: [] })],
      creds,
    );
    helper.onInput('sink', () => {
      if (got++ === RECV_WARM) {
        t0 = performance.now();
        cpu = cpuMeter();
      }
    });
    await profiled('node-receive', () => until(() => got === RECV_WARM + RECV_N));
    const rate = (RECV_N - 1) / ((performance.now() - t0) / 1000);
    const busy = cpu(RECV_N - 1);
    await helper.stop();
    return { rate, ...busy };
  },
  async 'node-latency'() {
    const { helper, send, arrivals } = await latencyFlow('node-lat');
    const samples = await probe(send, arrivals, N + 50, 50);
    await helper.stop();
    return { p50_ms: percentile(samples, 0.5), p99_ms: percentile(samples, 0.99) };
  },
  async 'node-latency-loaded'() {
    // As node-latency, while LOADED_RATE msg/s (1,000) of other traffic flow through the same send node, hub and device
    // receive node: a probe waits behind whatever that traffic has queued in the runtime, the link and the hub.
    const rate = Number(process.env.BENCH_LOADED_RATE || 1000);
    const { helper, send, arrivals } = await latencyFlow('node-lat-loaded');
    let sent = 0;
    let background = 0;
    const t0 = performance.now();
    // Every 2 ms, as many as keep the count at rate x elapsed: a steady rate, not bursts of a timer's worth.
    const timer = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) * rate) / 1000);
      for (; sent < due; sent++) send.receive({ payload: `bg${sent}` });
    }, 2);
    arrivals.other = () => background++;
    const samples = await probe(send, arrivals, LOADED_PROBES + 50, 50, 3);
    clearInterval(timer);
    const seconds = (performance.now() - t0) / 1000;
    await until(() => background === sent);
    await helper.stop();
    return {
      p50_ms: percentile(samples, 0.5),
      p99_ms: percentile(samples, 0.99),
      background_rate: sent / seconds,
      background_sent: sent,
      background_received: background,
    };
  },
  async 'sdk-latency'() {
    const id = 'sdk-lat';
    const { Client } = require('azure-iothub');
    const { Message } = require('azure-iot-common');
    const dev = require('azure-iot-device').Client.fromConnectionString(
      devStr(id),
      require('azure-iot-device-mqtt').Mqtt,
    );
    dev.setOptions({ ca: hub.caPem });
    let resolveOne;
    dev.on('message', (m) => {
      dev.complete(m, () => undefined);
      resolveOne();
    });
    await dev.open();
    const svc = Client.fromConnectionString(hub.hubConnectionString);
    await svc.open();
    const samples = [];
    for (let i = 0; i < N + 50; i++) {
      const got = new Promise((r) => {
        resolveOne = r;
      });
      const t0 = performance.now();
      svc.send(id, new Message(`l${i}`));
      await got;
      if (i >= 50) samples.push(performance.now() - t0);
    }
    samples.sort((a, b) => a - b);
    await svc.close();
    await dev.close();
    return { p50_ms: percentile(samples, 0.5), p99_ms: percentile(samples, 0.99) };
  },
  // The scale cases: n devices in this one process, by one of three clients (each in its own process, so RSS is not mixed).
  async 'scale-node'(n) {
    // One device receive node acting as all n devices (its list mode), in a real Node-RED runtime.
    const attempts = countAttempts(require('mqtt'));
    const { node, creds } = cfgNode();
    const recv = (deviceId) =>
      at({
        id: 'recv',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId,
        deviceIdType: 'str',
        output: 'string',
        settle: 'auto',
        wires: [['sink']],
      });
    // The runtime, the config node and an idle receive node run before the baseline: what is measured is the devices.
    const helper = await nodeRuntime(
      [{ id: 'tab', type: 'tab' }, node, recv(''), at({ id: 'sink', type: 'junction', wires: [] })],
      creds,
    );
    return scaleRun('node', n, attempts, async (ids, onMessage) => {
      let status = {};
      let peakReconnecting = 0;
      helper.onStatus((id, st) => {
        if (id !== 'recv' || !st) return;
        status = st;
        const r = /(\d+) reconnecting/.exec(st.text || '');
        if (r) peakReconnecting = Math.max(peakReconnecting, Number(r[1]));
      });
      await helper.deploy([
        { id: 'tab', type: 'tab' },
        node,
        recv(ids.join('\n')),
        at({ id: 'sink', type: 'junction', wires: [] }),
      ]);
      helper.onInput('sink', onMessage);
      return {
        // The node's summary: fill green and shape dot once every device is connected; before that, "k connected, ...".
        connected: () =>
          status.fill === 'green' && status.shape === 'dot'
            ? ids.length
            : Number((/(\d+) connected/.exec(status.text || '') || [0, 0])[1]),
        connectedIds: () => ids,
        extra: () => ({ peak_reconnecting: peakReconnecting, status: status.text }),
      };
    });
  },
  async 'scale-bare'(n) {
    // mqtt.js alone, with what our MQTT transport sends (core/mqtt-device.ts): the floor for a client of n devices.
    const mqtt = require('mqtt');
    const attempts = countAttempts(mqtt);
    const hostName = /HostName=([^;]+)/.exec(hub.hubConnectionString)[1];
    const clientType = encodeURIComponent(
      `iothub-c2d-node-red/0.1 (node ${process.version}; ${process.platform}; ${process.arch})`,
    );
    return scaleRun('bare', n, attempts, async (ids, onMessage) => {
      let connected = 0;
      let errors = 0;
      let drops = 0;
      const up = new Set();
      for (const id of ids) {
        const password = createSasToken({
          resourceUri: `${hostName}/devices/${id}`,
          key: hubKey,
          keyName: 'iothubowner',
          expiresAt: Math.floor(Date.now() / 1000) + 3600,
        });
        // reconnectPeriod 1000: mqtt.js's own reconnect (our transport reconnects itself, after 1 s ±50 %).
        const c = mqtt.connect(`mqtts://127.0.0.1:${hub.ports.mqtts}`, {
          clientId: id,
          username: `${hostName}/${id}/?api-version=2021-04-12&DeviceClientType=${clientType}`,
          password,
          protocolVersion: 4,
          clean: false,
          keepalive: 180,
          connectTimeout: 30_000,
          reconnectPeriod: 1000,
          ca: hub.caPem,
          servername: 'localhost',
        });
        c.on('connect', () =>
          c.subscribe(`devices/${id}/messages/devicebound/#`, { qos: 1 }, (err) => {
            if (err) errors++;
            else if (!up.has(id)) {
              up.add(id);
              connected++;
            }
          }),
        );
        c.on('message', onMessage);
        c.on('error', () => errors++);
        c.on('close', () => {
          if (up.has(id)) drops++;
        });
      }
      return {
        connected: () => connected,
        connectedIds: () => [...up],
        extra: () => ({ errors, drops_after_connect: drops }),
      };
    });
  },
  async 'scale-sdk'(n, agentOnce = false) {
    // The official device SDK over MQTT, as many clients as it holds.
    // Each client's first open runs `lsb_release -a` in a child process (getos, for the platform part of its user agent,
    // azure-iot-common getAgentPlatformString): 10,000 clients spawn 10,000 processes. agentOnce (the case
    // scale-sdkonce) lets the first client's answer serve all, a patch no user would make, to see what the clients
    // themselves hold at full scale.
    if (agentOnce) {
      const common = require('azure-iot-common');
      const platform = common.getAgentPlatformString;
      let answer;
      const waiting = [];
      common.getAgentPlatformString = (cb) => {
        if (answer !== undefined) return cb(answer);
        waiting.push(cb);
        if (waiting.length === 1)
          platform((a) => {
            answer = a;
            for (const w of waiting.splice(0)) w(a);
          });
      };
    }
    const { Client } = require('azure-iot-device');
    const { Mqtt } = require('azure-iot-device-mqtt');
    const attempts = countAttempts(
      require(require.resolve('mqtt', { paths: [require.resolve('azure-iot-mqtt-base')] })),
    );
    // Opened through a limit of BENCH_SCALE_SDK_CONCURRENCY (100, as our node's ConnectGate) opens under way at once, as a
    // fair user would; a failed open waits 1 s and queues again.
    const limit = Number(process.env.BENCH_SCALE_SDK_CONCURRENCY || 100);
    return scaleRun(agentOnce ? 'sdkonce' : 'sdk', n, attempts, async (ids, onMessage) => {
      let errors = 0;
      let disconnects = 0;
      let active = 0;
      // Opens waiting for a turn, first come first served (a Set: its order is insertion order).
      const line = new Set();
      const up = new Set();
      const next = () => {
        for (const open of line) {
          if (active >= limit) return;
          line.delete(open);
          active++;
          open();
        }
      };
      for (const id of ids) {
        const d = Client.fromConnectionString(devStr(id), Mqtt);
        d.setOptions({ ca: hub.caPem }, () => undefined);
        d.on('message', onMessage);
        d.on('error', () => errors++);
        d.on('disconnect', () => disconnects++);
        const open = () =>
          d.open().then(
            () => {
              up.add(id);
              active--;
              next();
            },
            () => {
              errors++;
              active--;
              next();
              setTimeout(() => {
                line.add(open);
                next();
              }, 1000);
            },
          );
        line.add(open);
      }
      next();
      return {
        connected: () => up.size,
        connectedIds: () => [...up],
        extra: () => ({ errors, disconnects, concurrency: limit }),
      };
    });
  },
  'scale-sdkonce'(n) {
    return cases['scale-sdk'](n, true);
  },
  async 'feedback-latency'() {
    const id = 'fb-lat';
    const { node, creds } = cfgNode();
    const helper = await nodeRuntime(
      [
        { id: 'tab', type: 'tab' },
        node,
        sendNode(id, 'full'),
        recvNode(id, 'string', 'got'),
        at({ id: 'fb', type: 'iothub-c2d-feedback', connection: 'cfg', split: true, wires: [['fbout']] }),
        at({ id: 'got', type: 'junction', wires: [] }),
        at({ id: 'fbout', type: 'junction', wires: [] }),
      ],
      creds,
    );
    // The hub's feedback queue may still hold the send case's records ("purged", from its ack full runs): drain them
    // first, and count only this device's records, so the figure is this message's way and not the queue's backlog.
    let lastFb = performance.now();
    let tGot;
    let resolveFb = () => undefined;
    helper.onInput('got', () => {
      tGot = performance.now();
    });
    helper.onInput('fbout', (msg) => {
      lastFb = performance.now();
      if (msg.deviceId === id) resolveFb(performance.now() - tGot);
    });
    await until(() => performance.now() - lastFb > 1000);
    // FEEDBACK_SAMPLES (1,000): enough that p99 is not the 3rd-worst of a few hundred. Timed after WARM (1,000)
    // untimed, as the send cases are: the first thousand round trips are also both processes' JIT compiling the path
    // on the 2 cores the messages need (their p99 is reported as cold_p99_ms).
    const count = Number(process.env.BENCH_FEEDBACK_SAMPLES || 1000);
    const cold = [];
    const samples = [];
    for (let i = 0; i < WARM + count; i++) {
      const fb = new Promise((r) => {
        resolveFb = r;
      });
      helper.getNode('send').receive({ payload: `f${i}` });
      const d = await fb;
      (i < WARM ? cold : samples).push(d);
    }
    samples.sort((a, b) => a - b);
    cold.sort((a, b) => a - b);
    await helper.stop();
    return {
      p50_ms: percentile(samples, 0.5),
      p99_ms: percentile(samples, 0.99),
      worst_ms: samples.slice(-5),
      warm: WARM,
      cold_p99_ms: percentile(cold, 0.99),
    };
  },
};

(async () => {
  const [name, arg] = process.argv.slice(2);
  const result = await cases[name](arg === undefined ? undefined : Number.isNaN(Number(arg)) ? arg : Number(arg));
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
})().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
