'use strict';
// Shared pieces for the node tests: a local hub on ephemeral ports, the node modules, flow builders.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const helper = require('node-red-node-test-helper');

const root = path.join(__dirname, '..', '..');
const nodeModules = [
  require(path.join(root, 'nodes', 'iothub-connection.js')),
  require(path.join(root, 'nodes', 'iothub-device-receive.js')),
  require(path.join(root, 'nodes', 'iothub-c2d-send.js')),
  require(path.join(root, 'nodes', 'iothub-c2d-feedback.js')),
];
const { start } = require(path.join(root, 'nodes', 'localhub', 'index.js'));

// NODE_RED_PATH lets CI run the same tests against Node-RED 5 (installed beside the project under Node 22).
helper.init(process.env.NODE_RED_PATH || require.resolve('node-red'));

/** A data directory holding the tests' shared CA (see scripts/test.js), so official SDKs trust the hub. */
function hubDataDir() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-test-'));
  const caDir = process.env.IOTHUB_TEST_CA_DIR;
  if (caDir) for (const f of ['ca.pem', 'ca.key']) fs.copyFileSync(path.join(caDir, f), path.join(dataDir, f));
  return dataDir;
}

async function startHub(options = {}) {
  const dataDir = options.dataDir || hubDataDir();
  const hub = await start({
    dataDir,
    ports: { mqtts: 0, amqps: 0, amqp: 0, https: 0 },
    feedbackBatchMs: 20,
    autoRegister: true,
    ...options,
  });
  hub.dataDir = dataDir;
  return hub;
}

/** A config node pointed at a hub the way a user points one at Azure: connection string, ports, CA. */
function configNode(hub, extra = {}) {
  return {
    node: {
      id: 'cfg',
      type: 'iothub-connection',
      name: 'hub',
      mode: 'azure',
      deviceTransport: 'mqtt',
      serviceTransport: 'amqp',
      tokenLifetime: 3600,
      mqttPort: hub.ports.mqtts,
      amqpPort: hub.ports.amqps,
      wsPort: hub.ports.https,
      ...extra,
    },
    credentials: { cfg: { connectionString: hub.hubConnectionString, ca: hub.caPem } },
  };
}

/** Resolves with the first `count` messages a helper node receives; fails, saying how many came, after timeoutMs. */
function collect(node, count, timeoutMs = 20000) {
  const got = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${node.id}: got ${got.length} of ${count} messages`)), timeoutMs);
    node.on('input', (msg) => {
      got.push(msg);
      if (got.length === count) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

/**
 * An MQTT device receive node `rm` (config `cfg`) and an AMQP one `ra` (config `cfgA`) both wired to helper `out`,
 * a c2d send node `send` (on `cfg`; its outcomes to helper `tracked`) and a Catch node into helper `caught`.
 * cfgExtra goes on both config nodes (ports of a proxy, keep-alive, token life); send overrides the send node.
 */
function twoDevicesFlow(hub, { mqttDevice, amqpDevice, cfgExtra = {}, amqpCfgExtra = {}, send = {} }) {
  const mqttCfg = configNode(hub, cfgExtra);
  const amqpCfg = configNode(hub, { ...cfgExtra, ...amqpCfgExtra, id: 'cfgA', deviceTransport: 'amqp' });
  const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
  return {
    credentials: { cfg: mqttCfg.credentials.cfg, cfgA: amqpCfg.credentials.cfg },
    flow: [
      { id: 'tab', type: 'tab' },
      mqttCfg.node,
      amqpCfg.node,
      at({
        id: 'rm',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId: mqttDevice,
        output: 'string',
        settle: 'auto',
        wires: [['out']],
      }),
      at({
        id: 'ra',
        type: 'iothub-device-receive',
        connection: 'cfgA',
        deviceId: amqpDevice,
        output: 'string',
        settle: 'auto',
        wires: [['out']],
      }),
      at({
        id: 'send',
        type: 'iothub-c2d-send',
        connection: 'cfg',
        deviceId: '',
        deviceIdType: 'str',
        ack: 'full',
        ttl: '',
        trackDelivery: true,
        trackTimeout: 60,
        mappings: [],
        wires: [['tracked']],
        ...send,
      }),
      at({ id: 'catch', type: 'catch', scope: null, uncaught: false, wires: [['caught']] }),
      at({ id: 'out', type: 'helper' }),
      at({ id: 'tracked', type: 'helper' }),
      at({ id: 'caught', type: 'helper' }),
    ],
  };
}

function waitFor(predicate, what, timeoutMs = 10000) {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      let v;
      try {
        v = predicate();
      } catch {
        v = undefined;
      }
      if (v) return resolve(v);
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

module.exports = { hubDataDir, helper, nodeModules, startHub, configNode, twoDevicesFlow, collect, waitFor, root };
