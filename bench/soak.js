'use strict';
// `npm run soak`: a long run of the four nodes as a user runs them, watching for loss and growth.
// c2d send (ack full, delivery tracking) -> local hub (its own process, TLS) -> two device receive nodes, one on an
// MQTT config node and one on an AMQP config node, in a real Node-RED runtime deployed through its admin API. A
// redeploy every minute (full and modified-nodes in turn), a hub restart every 5 minutes (same ports, same data
// directory: what it queued survives), 60 s SAS tokens. Samples RSS, heap and handles every 10 s into
// bench/soak.json and bench/soak.svg (drawn by vega-lite). Exit code 1 when a message was lost, the hub crashed, or
// RSS at the end is more than 10 % above RSS at the 2-minute mark.
//
// node bench/soak.js [--minutes N]    (or SOAK_MINUTES; default 20)
// SOAK_REDEPLOY_S (60), SOAK_RESTART_S (300): shorter runs get shorter intervals (a sixth and a half of the run) so
// every run has both; SOAK_RATE (25 msg/s per device), SOAK_TOKEN_S (60), SOAK_SAMPLE_S (10), SOAK_DRAIN_S (120),
// SOAK_TRACK_S (60, the send node's "give up after"), SOAK_QUEUE_DEPTH (5000 per device on the hub).
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startNodeRed } = require('../scripts/node-red-runtime');
const { adminRequest } = require('../test/support/runtime');

function setting(name, env, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  const raw = i >= 0 ? process.argv[i + 1] : process.env[env];
  const v = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(v) || v <= 0) {
    console.error(`soak: ${i >= 0 ? `--${name}` : env} must be a positive number (got ${JSON.stringify(raw)})`);
    process.exit(2);
  }
  return v;
}

const MINUTES = setting('minutes', 'SOAK_MINUTES', 20);
const RUN_S = MINUTES * 60;
const REDEPLOY_S = setting('redeploy-s', 'SOAK_REDEPLOY_S', Math.min(60, RUN_S / 6));
const RESTART_S = setting('restart-s', 'SOAK_RESTART_S', Math.min(300, RUN_S / 2));
const RATE = setting('rate', 'SOAK_RATE', 25);
const TOKEN_S = setting('token-s', 'SOAK_TOKEN_S', 60);
const SAMPLE_S = setting('sample-s', 'SOAK_SAMPLE_S', 10);
const DRAIN_S = setting('drain-s', 'SOAK_DRAIN_S', 120);
const TRACK_S = setting('track-s', 'SOAK_TRACK_S', 60);
const QUEUE_DEPTH = setting('queue-depth', 'SOAK_QUEUE_DEPTH', 5000);
const GROWTH_LIMIT = 0.1;
// RSS is judged from the 2-minute mark (start-up and JIT warm-up done); a run under 4 minutes has no steady
// state by then, so it is judged from a tenth of the run.
const BASELINE_S = RUN_S >= 240 ? 120 : RUN_S / 10;
const DEVICES = { mqtt: 'soak-mqtt', amqp: 'soak-amqp' };
const transportOf = (seq) => (seq % 2 ? 'amqp' : 'mqtt');
const OUTCOMES = ['delivered', 'expired', 'rejected', 'deliveryCountExceeded', 'purged', 'timeout'];

const mb = (bytes) => Math.round((bytes / 1048576) * 10) / 10;
const redact = (s) => String(s).replace(/(SharedAccessKey|SharedAccessSignature|sig|skn)=[^;&\s"]+/gi, '$1=<redacted>');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves true when the promise settles within ms, false otherwise; leaves no timer behind (handles are measured). */
function within(promise, ms) {
  let timer;
  const timeout = new Promise((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  return Promise.race([promise.then(() => true), timeout]).finally(() => clearTimeout(timer));
}

/** Polls a condition until it holds or the deadline passes; resolves true or false. */
async function waitFor(cond, timeoutMs, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}

// ---- the local hub in a child process, restartable on the same ports and data directory

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-soak-'));
const hubDataDir = path.join(workDir, 'hub');
const hubLogFile = path.join(workDir, 'hub.log');
let hub;
let hubCrashes = 0;

function startHub(ports) {
  const child = spawn(process.execPath, [path.join(__dirname, 'hub-process.js')], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: {
      ...process.env,
      HUB_DATA_DIR: hubDataDir,
      HUB_QUEUE_DEPTH: String(QUEUE_DEPTH),
      HUB_FEEDBACK_BATCH_MS: '100',
      HUB_LOG: hubLogFile,
      ...(ports ? { HUB_PORTS: JSON.stringify(ports) } : {}),
    },
  });
  const h = { child, info: undefined, stopping: false };
  child.on('exit', (code, signal) => {
    if (!h.stopping) {
      hubCrashes++;
      console.error(`soak: the hub process exited on its own (${code ?? signal})`);
    }
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
      const nl = out.indexOf('\n');
      if (nl >= 0 && !h.info) {
        h.info = JSON.parse(out.slice(0, nl));
        resolve(h);
      }
    });
    child.once('exit', (code) => reject(new Error(`the hub exited while starting (${code})`)));
  });
}

async function stopHub(h) {
  h.stopping = true;
  if (h.child.exitCode !== null || h.child.signalCode !== null) return;
  const exited = new Promise((r) => h.child.once('exit', r));
  h.child.kill('SIGTERM');
  const ok = await within(exited, 30_000);
  if (!ok) {
    h.child.kill('SIGKILL');
    await exited;
    throw new Error('the hub did not stop within 30 s of SIGTERM');
  }
}

function hubRssMb() {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${hub.child.pid}/status`, 'utf8'));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}

// ---- bookkeeping per message (sequence number = index; even numbers go to the MQTT device, odd to the AMQP one)

const CAP = Math.ceil(RATE * 2 * (RUN_S + 60) * 1.5) + 1000;
const completions = new Uint8Array(CAP); // done() or done(err) calls of the send node
const accepted = new Uint8Array(CAP); // done(): the hub took it
const failed = new Uint8Array(CAP); // done(err): the flow was told (Catch)
const delivered = new Uint8Array(CAP); // outputs of the device receive nodes (saturates at 255)
const outcome = new Uint8Array(CAP); // 1 + index in OUTCOMES of the tracked delivery outcome
const failReasons = new Map();
let outcomesSeen = 0;
let outcomeTwice = 0;
let misrouted = 0;
let foreign = 0;
let injected = 0;
let deliveredOutputs = 0;
let droppedTracking = 0;
const duplicates = [];
let t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;
const logLines = new Map();

function onLog(m) {
  if (m.level > 30) return; // warn and worse
  const text = redact(
    m.msg instanceof Error ? m.msg.message : typeof m.msg === 'string' ? m.msg : JSON.stringify(m.msg),
  );
  const dropped = /^(\d+) messages were still waiting for delivery feedback/.exec(text);
  if (dropped) droppedTracking += Number(dropped[1]);
  const key = `${m.level <= 20 ? 'error' : 'warn'} [${m.type ?? ''}${m.id ? `:${m.id}` : ''}] ${text.replace(/\d+/g, 'N')}`;
  logLines.set(key, (logLines.get(key) ?? 0) + 1);
}

function tally() {
  const t = {};
  for (const tr of ['mqtt', 'amqp']) {
    t[tr] = {
      sent: 0,
      accepted: 0,
      failed: 0,
      unfinished: 0,
      delivered: 0,
      duplicated: 0,
      lost: 0,
      failed_but_delivered: 0,
      completed_twice: 0,
    };
  }
  const tracking = Object.fromEntries([...OUTCOMES, 'none'].map((o) => [o, 0]));
  for (let s = 0; s < injected; s++) {
    const r = t[transportOf(s)];
    r.sent++;
    if (completions[s] === 0) r.unfinished++;
    if (completions[s] > 1) r.completed_twice++;
    if (accepted[s]) r.accepted++;
    if (failed[s]) r.failed++;
    if (delivered[s] > 0) r.delivered++;
    if (delivered[s] > 1) r.duplicated += delivered[s] - 1;
    // Lost: the hub took it (or nothing told the flow either way), and no device receive node ever output it.
    if (delivered[s] === 0 && (accepted[s] || completions[s] === 0)) r.lost++;
    if (failed[s] && delivered[s] > 0) r.failed_but_delivered++;
    if (accepted[s]) tracking[outcome[s] ? OUTCOMES[outcome[s] - 1] : 'none']++;
  }
  const all = {};
  for (const k of Object.keys(t.mqtt)) all[k] = t.mqtt[k] + t.amqp[k];
  return { ...t, all, tracking };
}

// ---- the flow: two config nodes, a junction the harness feeds (standing for an inject node), send, two receivers

function flowFor(ports, rev) {
  const cfgBase = {
    type: 'iothub-connection',
    mode: 'azure',
    serviceTransport: 'amqp',
    tokenLifetime: TOKEN_S,
    keepAlive: 180,
    mqttPort: ports.mqtts,
    amqpPort: ports.amqps,
    wsPort: ports.https,
  };
  const at = (n) => ({ x: 200, y: 100, z: 'tab', ...n });
  return [
    { id: 'tab', type: 'tab', label: 'soak' },
    { ...cfgBase, id: 'cfg', name: `mqtt devices and back end ${rev.cfg}`, deviceTransport: 'mqtt' },
    { ...cfgBase, id: 'cfgA', name: `amqp devices ${rev.cfgA}`, deviceTransport: 'amqp' },
    at({ id: 'src', type: 'junction', wires: [['send']] }),
    at({
      id: 'send',
      type: 'iothub-c2d-send',
      name: `send ${rev.send}`,
      connection: 'cfg',
      deviceId: '',
      deviceIdType: 'str',
      ack: 'full',
      ttl: '',
      trackDelivery: true,
      trackTimeout: TRACK_S,
      mappings: [],
      wires: [['tracked']],
    }),
    at({
      id: 'rm',
      type: 'iothub-device-receive',
      name: `mqtt ${rev.rm}`,
      connection: 'cfg',
      deviceId: DEVICES.mqtt,
      output: 'string',
      settle: 'auto',
      wires: [['sink']],
    }),
    at({
      id: 'ra',
      type: 'iothub-device-receive',
      name: `amqp ${rev.ra}`,
      connection: 'cfgA',
      deviceId: DEVICES.amqp,
      output: 'string',
      settle: 'auto',
      wires: [['sink']],
    }),
    at({ id: 'sink', type: 'junction', wires: [] }),
    at({ id: 'tracked', type: 'junction', wires: [] }),
  ];
}

function handleKinds() {
  const kinds = {};
  for (const r of process.getActiveResourcesInfo()) kinds[r] = (kinds[r] ?? 0) + 1;
  return kinds;
}
/** The lasting kinds, without file system requests in flight (Node-RED writing flows.json). */
function lastingKinds() {
  return Object.fromEntries(Object.entries(handleKinds()).filter(([k]) => !/^FSReq|^CloseReq|^StatWatcher/.test(k)));
}

// ---- the plot, drawn by vega-lite

async function plot(result) {
  const vega = require('vega');
  const vegaLite = require('vega-lite');
  const minutes = (t) => Math.round((t / 60) * 100) / 100;
  const mem = result.samples.flatMap((s) => [
    { min: minutes(s.t), series: 'RSS: Node-RED and the nodes', mb: s.rss_mb },
    { min: minutes(s.t), series: 'heap used: Node-RED and the nodes', mb: s.heap_used_mb },
    ...(s.hub_rss_mb === null
      ? []
      : [{ min: minutes(s.t), series: 'RSS: local hub (child process)', mb: s.hub_rss_mb }]),
  ]);
  const events = result.events.map((e) => ({
    min: minutes(e.t),
    event: e.kind === 'restart' ? 'hub restart' : `redeploy (${e.type})`,
  }));
  const handleRows = result.samples.map((s) => ({ min: minutes(s.t), handles: s.handles }));
  const v = result.verdict;
  const x = {
    field: 'min',
    type: 'quantitative',
    title: 'minutes',
    scale: { domain: [0, minutes(Math.max(...result.samples.map((s) => s.t)))], nice: false },
  };
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: {
      text: `npm run soak: ${result.settings.minutes} min, ${v.pass ? 'PASS' : 'FAIL'}`,
      subtitle: [
        `sent ${result.totals.all.sent}, delivered ${result.totals.all.delivered}, duplicated ${result.totals.all.duplicated}, lost ${result.totals.all.lost}; ` +
          `RSS ${v.rss_baseline_mb} MB at ${minutes(v.rss_baseline_t)} min -> ${v.rss_end_mb} MB at the end (${v.rss_growth_pct >= 0 ? '+' : ''}${v.rss_growth_pct} %, limit +${GROWTH_LIMIT * 100} %)`,
        `${result.settings.rate_per_device} msg/s to an MQTT and an AMQP device, ack full, delivery tracking, ${result.settings.token_s} s tokens, ` +
          `a redeploy every ${result.settings.redeploy_s} s, a hub restart every ${result.settings.restart_s} s`,
      ],
    },
    vconcat: [
      {
        width: 760,
        height: 320,
        layer: [
          {
            data: { values: events },
            mark: { type: 'rule', strokeDash: [4, 3] },
            encoding: {
              x,
              color: {
                field: 'event',
                type: 'nominal',
                title: 'events',
                legend: { labelLimit: 400 },
                scale: {
                  domain: ['redeploy (full)', 'redeploy (nodes)', 'hub restart'],
                  range: ['#9ecae1', '#c7c7c7', '#d62728'],
                },
              },
            },
          },
          {
            data: { values: mem },
            mark: { type: 'line', point: { size: 12 } },
            encoding: {
              x,
              y: { field: 'mb', type: 'quantitative', title: 'MB' },
              color: {
                field: 'series',
                type: 'nominal',
                title: 'memory',
                legend: { labelLimit: 400 },
                scale: { range: ['#1f77b4', '#ff7f0e', '#2ca02c'] },
              },
            },
          },
          {
            data: {
              values: [
                {
                  mb: v.rss_limit_mb,
                  label: `RSS limit (+${GROWTH_LIMIT * 100} % of the ${minutes(v.rss_baseline_t)}-min sample)`,
                },
              ],
            },
            mark: { type: 'rule', color: 'black', strokeDash: [1, 2] },
            encoding: { y: { field: 'mb', type: 'quantitative' }, tooltip: { field: 'label' } },
          },
          {
            data: {
              values: [
                {
                  mb: v.rss_limit_mb,
                  min: 0,
                  label: `RSS limit (+${GROWTH_LIMIT * 100} % of the ${minutes(v.rss_baseline_t)}-min sample)`,
                },
              ],
            },
            mark: { type: 'text', align: 'left', dy: -6, fontSize: 10 },
            encoding: { x, y: { field: 'mb', type: 'quantitative' }, text: { field: 'label' } },
          },
        ],
        resolve: { scale: { color: 'independent' } },
      },
      {
        width: 760,
        height: 120,
        data: { values: handleRows },
        mark: { type: 'line', point: { size: 12 }, color: '#9467bd' },
        encoding: { x, y: { field: 'handles', type: 'quantitative', title: 'active handles' } },
      },
    ],
  };
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

// ---- the run

(async () => {
  const settings = {
    minutes: MINUTES,
    rate_per_device: RATE,
    token_s: TOKEN_S,
    redeploy_s: REDEPLOY_S,
    restart_s: RESTART_S,
    sample_s: SAMPLE_S,
    drain_s: DRAIN_S,
    track_timeout_s: TRACK_S,
    hub_queue_depth: QUEUE_DEPTH,
    rss_baseline_s: BASELINE_S,
    rss_growth_limit: GROWTH_LIMIT,
    node: process.version,
    platform: `${os.platform()} ${os.arch()}, ${os.cpus().length} cpus`,
  };
  console.log(
    `soak: ${MINUTES} min, ${RATE} msg/s per device (MQTT and AMQP), ack full, delivery tracking, ${TOKEN_S} s tokens, ` +
      `a redeploy every ${REDEPLOY_S} s, a hub restart every ${RESTART_S} s, a sample every ${SAMPLE_S} s; RSS judged from ${BASELINE_S} s` +
      (RUN_S < 240 ? ' (a run under 4 min: a tenth of it, not the 2-minute mark)' : ''),
  );

  hub = await startHub();
  const ports = hub.info.ports;
  const hubString = hub.info.hubConnectionString;
  const credentials = { connectionString: hubString, ca: hub.info.caPem };
  const userDir = path.join(workDir, 'node-red');
  fs.mkdirSync(userDir);
  const red = await startNodeRed({
    userDir,
    credentialSecret: 'soak',
    settings: { logging: { soak: { level: 'warn', metrics: false, audit: false, handler: () => onLog } } },
  });
  const { RED } = red;

  RED.hooks.add('onComplete.soak', (ev) => {
    if (ev.node.id !== 'send' || typeof ev.msg.seq !== 'number') return;
    const s = ev.msg.seq;
    completions[s] = Math.min(255, completions[s] + 1);
    if (ev.error) {
      failed[s] = 1;
      const why = redact(ev.error.message ?? ev.error).replace(/\d+/g, 'N');
      failReasons.set(why, (failReasons.get(why) ?? 0) + 1);
    } else {
      accepted[s] = 1;
    }
  });
  RED.hooks.add('postDeliver.soak', (ev) => {
    const id = ev.destination.id;
    if (id === 'sink') {
      deliveredOutputs++;
      const s = Number(ev.msg.payload);
      if (!Number.isInteger(s) || s < 0 || s >= injected) {
        foreign++;
        return;
      }
      if (ev.msg.deviceId !== DEVICES[transportOf(s)]) misrouted++;
      // When a duplicate came (the first 1,000): beside the events, it says which reconnect redelivered it.
      if (delivered[s] > 0 && duplicates.length < 1000)
        duplicates.push({ t: Math.round(elapsed() * 10) / 10, seq: s, transport: transportOf(s) });
      delivered[s] = Math.min(255, delivered[s] + 1);
    } else if (id === 'tracked' && typeof ev.msg.seq === 'number') {
      const s = ev.msg.seq;
      if (outcome[s]) outcomeTwice++;
      else outcomesSeen++;
      outcome[s] = OUTCOMES.indexOf(ev.msg.delivery) + 1;
    }
  });

  const handlesIdleBefore = lastingKinds();
  const rev = { cfg: 0, cfgA: 0, send: 0, rm: 0, ra: 0 };
  let paused = false;
  const deploy = async (flow, type, withCredentials) => {
    // The harness stands for an inject node in the flow: it stops feeding while a deploy stops and starts the flow.
    // Node-RED answers POST /flows once the old flow stopped, and starts the new one after: the deploy is over at its
    // runtime-deploy event.
    paused = true;
    let onEvent;
    const started = new Promise((resolve) => {
      onEvent = (ev) => ev.id === 'runtime-deploy' && resolve();
      RED.events.on('runtime-event', onEvent);
    });
    try {
      const body = withCredentials
        ? flow.map((n) => (n.type === 'iothub-connection' ? { ...n, credentials } : n))
        : flow;
      const r = await adminRequest(red.port, 'POST', '/flows', body, type);
      if (r.status !== 204) throw new Error(`deploy (${type}) answered ${r.status}: ${redact(r.text)}`);
      if (!(await within(started, 30_000))) throw new Error(`the flow did not start within 30 s of a ${type} deploy`);
      if (flow.length && !RED.nodes.getNode('src')) throw new Error('no src node after the deploy');
    } finally {
      RED.events.removeListener('runtime-event', onEvent);
      paused = false;
    }
  };
  await deploy(flowFor(ports, rev), 'full', true);

  // Traffic: RATE msg/s per device, into the current src junction, with sequence numbers as payload.
  t0 = performance.now();
  let due = 0;
  let last = performance.now();
  let feeding = true;
  const feeder = setInterval(() => {
    const now = performance.now();
    const dt = (now - last) / 1000;
    last = now;
    if (paused || !feeding) return;
    due += dt * RATE * 2;
    const src = RED.nodes.getNode('src');
    if (!src) return;
    while (due >= 1 && injected < CAP) {
      due--;
      const s = injected++;
      src.receive({ payload: String(s), deviceId: DEVICES[transportOf(s)], seq: s });
    }
  }, 20);

  const samples = [];
  const sample = (phase) => {
    const m = process.memoryUsage();
    const kinds = handleKinds();
    samples.push({
      t: Math.round(elapsed() * 10) / 10,
      phase,
      rss_mb: mb(m.rss),
      heap_used_mb: mb(m.heapUsed),
      heap_total_mb: mb(m.heapTotal),
      external_mb: mb(m.external),
      handles: Object.values(kinds).reduce((a, b) => a + b, 0),
      handle_kinds: kinds,
      hub_rss_mb: hubRssMb(),
      sent: injected,
      delivered_outputs: deliveredOutputs,
    });
  };
  sample('run');
  const sampler = setInterval(() => sample('run'), SAMPLE_S * 1000);

  // The schedule: redeploys at every REDEPLOY_S, hub restarts at every RESTART_S, half a redeploy interval early so the two
  // do not fall together. Deploys alternate full and modified-nodes (one receive node, the send node or a config node).
  const plan = [];
  for (let k = 1; k * REDEPLOY_S < RUN_S - 1; k++) plan.push({ at: k * REDEPLOY_S, kind: 'redeploy' });
  for (let k = 1; k * RESTART_S - REDEPLOY_S / 2 < RUN_S - 1; k++)
    plan.push({ at: k * RESTART_S - REDEPLOY_S / 2, kind: 'restart' });
  plan.sort((a, b) => a.at - b.at);
  const events = [];
  const rotation = ['rm', 'ra', 'send', 'cfg', 'cfgA'];
  let deploys = 0;
  for (const step of plan) {
    const wait = step.at * 1000 - (performance.now() - t0);
    if (wait > 0) await sleep(wait);
    const started = performance.now();
    if (step.kind === 'redeploy') {
      deploys++;
      const type = deploys % 2 ? 'full' : 'nodes';
      const changed = type === 'nodes' ? rotation[(deploys / 2 - 1) % rotation.length] : undefined;
      if (changed) rev[changed]++;
      await deploy(flowFor(ports, rev), type);
      events.push({
        t: Math.round(elapsed() * 10) / 10,
        kind: 'redeploy',
        type,
        ...(changed ? { changed } : {}),
        ms: Math.round(performance.now() - started),
      });
    } else {
      await stopHub(hub);
      hub = await startHub(ports);
      if (hub.info.hubConnectionString !== hubString)
        throw new Error('the restarted hub has other keys: its data directory was not kept');
      events.push({ t: Math.round(elapsed() * 10) / 10, kind: 'restart', ms: Math.round(performance.now() - started) });
    }
    console.log(
      `soak: ${Math.round(elapsed())} s ${step.kind}${events.at(-1).type ? ` (${events.at(-1).type}${events.at(-1).changed ? `: ${events.at(-1).changed}` : ''})` : ''} ` +
        `in ${events.at(-1).ms} ms; sent ${injected}, delivered outputs ${deliveredOutputs}, RSS ${mb(process.memoryUsage().rss)} MB`,
    );
  }
  const wait = RUN_S * 1000 - (performance.now() - t0);
  if (wait > 0) await sleep(wait);

  // The end of the traffic: the last sample of the run is the "end" RSS. Then drain: every msg completed by the send node,
  // every accepted one output by a device receive node, every tracked one given an outcome (or dropped by a redeploy).
  feeding = false;
  clearInterval(feeder);
  clearInterval(sampler);
  sample('end');
  const trafficEndT = elapsed();
  const drainStarted = performance.now();
  const drained = await waitFor(() => {
    const t = tally();
    return t.all.unfinished === 0 && t.all.lost === 0;
  }, DRAIN_S * 1000);
  const tracked = await waitFor(() => outcomesSeen + droppedTracking >= tally().all.accepted, (TRACK_S + 15) * 1000);
  const drainS = Math.round((performance.now() - drainStarted) / 100) / 10;
  sample('drained');

  // Finally an empty flow: what the nodes leave behind once they are gone (beside the idle runtime before the first deploy).
  await deploy([], 'full');
  const idleEqual = () => JSON.stringify(lastingKinds()) === JSON.stringify(handlesIdleBefore);
  await waitFor(idleEqual, 10_000);
  const handlesIdleAfter = lastingKinds();

  const totals = tally();
  const base = samples.find((s) => s.t >= BASELINE_S && s.phase === 'run') ?? samples[0];
  const end = samples.find((s) => s.phase === 'end');
  const growth = (end.rss_mb - base.rss_mb) / base.rss_mb;
  const reasons = [];
  if (totals.all.lost > 0)
    reasons.push(
      `${totals.all.lost} messages lost (mqtt ${totals.mqtt.lost}, amqp ${totals.amqp.lost}; ${totals.all.unfinished} of them never completed by the send node)`,
    );
  if (growth > GROWTH_LIMIT)
    reasons.push(
      `RSS grew ${(growth * 100).toFixed(1)} % from ${base.rss_mb} MB at ${base.t} s to ${end.rss_mb} MB at the end (limit ${GROWTH_LIMIT * 100} %)`,
    );
  if (hubCrashes > 0) reasons.push(`the hub process exited on its own ${hubCrashes} times`);
  if (misrouted > 0) reasons.push(`${misrouted} messages came out of the wrong device's receive node`);
  if (foreign > 0) reasons.push(`${foreign} outputs carried no sequence number the soak sent`);
  const verdict = {
    pass: reasons.length === 0,
    reasons,
    rss_baseline_t: base.t,
    rss_baseline_mb: base.rss_mb,
    rss_end_t: end.t,
    rss_end_mb: end.rss_mb,
    rss_limit_mb: Math.round(base.rss_mb * (1 + GROWTH_LIMIT) * 10) / 10,
    rss_growth_pct: Math.round(growth * 1000) / 10,
    drained,
    tracking_settled: tracked,
    drain_s: drainS,
  };
  const hubLog = fs.existsSync(hubLogFile) ? fs.readFileSync(hubLogFile, 'utf8').split('\n').filter(Boolean) : [];
  const hubLogKinds = new Map();
  for (const l of hubLog) {
    const key = redact(l.slice(25)).replace(/\d+/g, 'N');
    hubLogKinds.set(key, (hubLogKinds.get(key) ?? 0) + 1);
  }
  const result = {
    date: new Date().toISOString(),
    settings,
    verdict,
    totals,
    tracking: { ...totals.tracking, dropped_on_redeploy_warned: droppedTracking, outcome_twice: outcomeTwice },
    failed_send_reasons: Object.fromEntries(failReasons),
    node_red_log: Object.fromEntries(logLines),
    hub_log: Object.fromEntries(hubLogKinds),
    events,
    duplicates,
    traffic_end_t: Math.round(trafficEndT * 10) / 10,
    handles: {
      idle_before_first_deploy: handlesIdleBefore,
      baseline: base.handle_kinds,
      end: end.handle_kinds,
      idle_after_empty_deploy: handlesIdleAfter,
    },
    samples,
  };
  fs.writeFileSync(path.join(__dirname, 'soak.json'), JSON.stringify(result, null, 2) + '\n');
  let plotted = true;
  try {
    fs.writeFileSync(path.join(__dirname, 'soak.svg'), await plot(result));
  } catch (err) {
    plotted = false;
    console.error(`soak: the plot could not be drawn: ${err.message}`);
  }

  // ---- the summary
  const rows = [['', 'sent', 'accepted', 'failed (Catch)', 'delivered', 'duplicated', 'lost', 'failed but delivered']];
  for (const k of ['mqtt', 'amqp', 'all']) {
    const r = totals[k];
    rows.push([
      k === 'all' ? 'total' : `${k} device`,
      r.sent,
      r.accepted,
      r.failed,
      r.delivered,
      r.duplicated,
      r.lost,
      r.failed_but_delivered,
    ]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  console.log('');
  for (const r of rows)
    console.log(r.map((c, i) => (i ? String(c).padStart(w[i]) : String(c).padEnd(w[i]))).join('  '));
  const tr = result.tracking;
  console.log(
    `\ndelivery tracking (accepted msgs): ${OUTCOMES.map((o) => `${o} ${tr[o]}`).join(', ')}, no outcome ${tr.none} ` +
      `(the send node warned of ${droppedTracking} dropped when a redeploy closed it)${outcomeTwice ? `, outcome twice ${outcomeTwice}` : ''}`,
  );
  if (failReasons.size) console.log(`failed sends: ${[...failReasons].map(([k, n]) => `${n} x ${k}`).join('; ')}`);
  const deployTypes = events.filter((e) => e.kind === 'redeploy');
  console.log(
    `events: ${deployTypes.length} redeploys (${deployTypes.filter((e) => e.type === 'full').length} full, ${deployTypes.filter((e) => e.type === 'nodes').length} modified nodes), ` +
      `${events.filter((e) => e.kind === 'restart').length} hub restarts (${events
        .filter((e) => e.kind === 'restart')
        .map((e) => `${e.ms} ms`)
        .join(', ')}); drain ${drainS} s`,
  );
  const first = samples[0];
  console.log(
    `RSS: ${first.rss_mb} MB at start, ${base.rss_mb} MB at ${base.t} s (baseline), ${end.rss_mb} MB at the end (${verdict.rss_growth_pct >= 0 ? '+' : ''}${verdict.rss_growth_pct} %, limit +${GROWTH_LIMIT * 100} %); ` +
      `max ${Math.max(...samples.map((s) => s.rss_mb))} MB`,
  );
  console.log(
    `heap used: ${base.heap_used_mb} MB at ${base.t} s, ${end.heap_used_mb} MB at the end; hub RSS ${base.hub_rss_mb} -> ${end.hub_rss_mb} MB`,
  );
  const kinds = (k) =>
    Object.entries(k)
      .sort()
      .map(([n, c]) => `${n} ${c}`)
      .join(', ');
  console.log(
    `handles: ${base.handles} at ${base.t} s (${kinds(base.handle_kinds)}), ${end.handles} at the end (${kinds(end.handle_kinds)})`,
  );
  console.log(
    `handles of the idle runtime: before the first deploy ${kinds(handlesIdleBefore)}; after an empty deploy ${kinds(handlesIdleAfter)}`,
  );
  if (logLines.size)
    console.log(`Node-RED warnings and errors:\n${[...logLines].map(([k, n]) => `  ${n} x ${k}`).join('\n')}`);
  if (hubLogKinds.size) console.log(`hub log:\n${[...hubLogKinds].map(([k, n]) => `  ${n} x ${k}`).join('\n')}`);
  if (!drained) console.log(`soak: the drain did not finish within ${DRAIN_S} s`);
  if (!tracked) console.log('soak: some tracked messages got no outcome within the tracking time');
  console.log(`\nwritten: bench/soak.json${plotted ? ', bench/soak.svg' : ''}`);
  console.log(verdict.pass ? 'soak: PASS' : `soak: FAIL: ${reasons.join('; ')}`);

  await red.stop();
  await stopHub(hub);
  fs.rmSync(workDir, { recursive: true, force: true });
  process.exit(verdict.pass ? 0 : 1);
})().catch((err) => {
  console.error(`soak: FAIL: ${redact(err.stack ?? err)}`);
  if (hub) {
    hub.stopping = true;
    hub.child.kill('SIGTERM');
  }
  process.exit(1);
});
