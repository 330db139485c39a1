'use strict';
// `npm start`: Node-RED (a devDependency) on http://127.0.0.1:1880 with this package, the built-in
// local hub and the tutorial flow deployed. Data lives in .node-red-data/ (gitignored) and is reused.
const fs = require('node:fs');
const path = require('node:path');
const { startNodeRed, root } = require('./node-red-runtime');

const userDir = path.join(root, '.node-red-data');
const port = Number(process.env.PORT) || 1880;
const TUTORIAL = path.join(root, 'examples', '01 Send C2D messages and get feedback (tutorial).json');

async function main() {
  fs.mkdirSync(userDir, { recursive: true });
  const firstStart = !fs.existsSync(path.join(userDir, 'flows.json'));
  // The same module instance the config nodes load (require follows the symlink), so they share this hub.
  const { acquireLocalHub, releaseLocalHub } = require(path.join(root, 'nodes', 'localhub', 'shared-hub.js'));
  const hub = await acquireLocalHub({ mqttsPort: 8883, amqpsPort: 5671, httpsPort: 8443 }, userDir);
  const device = 'MyDevice';
  let deviceString;
  try {
    deviceString = hub.deviceConnectionString(device);
  } catch {
    await hub.registerDevice(device);
    deviceString = hub.deviceConnectionString(device);
  }
  const red = await startNodeRed({
    userDir, port, logLevel: 'warn',
    flows: firstStart ? JSON.parse(fs.readFileSync(TUTORIAL, 'utf8')) : undefined,
  });
  process.stdout.write([
    '',
    `  Node-RED editor:   ${red.url}`,
    '',
    '  Local hub (for official Azure SDK apps; trust its CA with NODE_EXTRA_CA_CERTS):',
    `    CA certificate:    ${hub.caCertPath}`,
    `    ports:             MQTT ${hub.ports.mqtts}, AMQP ${hub.ports.amqps}, HTTPS and WebSockets ${hub.ports.https}`,
    `    hub (iothubowner): ${hub.hubConnectionString}`,
    `    device ${device}:   ${deviceString}`,
    '',
    '  Ctrl-C stops everything.',
    '',
  ].join('\n'));

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await red.stop();
    await releaseLocalHub(0);
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err) => {
  console.error(err && err.message ? err.message : err);
  process.exit(1);
});
