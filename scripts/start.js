'use strict';
// `npm start`: Node-RED (a devDependency) on http://127.0.0.1:1880 with this package, the built-in
// local hub and the tutorial flow deployed. Data lives in .node-red-data/ (gitignored) and is reused.
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');
const { startNodeRed, root } = require('./node-red-runtime');

const userDir = path.join(root, '.node-red-data');
const port = Number(process.env.PORT) || 1880;
const TUTORIAL = path.join(root, 'examples', '01 Send C2D messages and get feedback (tutorial).json');

/**
 * The credentialSecret of .node-red-data/, kept in .node-red-data/.credential-secret (random, made on first start), so
 * Node-RED neither generates a system key nor warns about one. A .node-red-data/ from before this file existed holds
 * Node-RED's generated key in .config.runtime.json: that key becomes the secret (Node-RED derives the cipher key from
 * either the same way), so the credentials it encrypted still read, and it leaves .config.runtime.json.
 */
function credentialSecret() {
  const secretFile = path.join(userDir, '.credential-secret');
  const runtimeFile = path.join(userDir, '.config.runtime.json');
  let runtimeConfig;
  try {
    runtimeConfig = JSON.parse(fs.readFileSync(runtimeFile, 'utf8'));
  } catch {
    runtimeConfig = undefined;
  }
  let secret = fs.existsSync(secretFile) ? fs.readFileSync(secretFile, 'utf8').trim() : '';
  if (!secret) {
    secret =
      typeof runtimeConfig?._credentialSecret === 'string'
        ? runtimeConfig._credentialSecret
        : crypto.randomBytes(32).toString('hex');
    fs.writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
  }
  if (runtimeConfig && runtimeConfig._credentialSecret === secret) {
    delete runtimeConfig._credentialSecret;
    fs.writeFileSync(runtimeFile, JSON.stringify(runtimeConfig, null, 4));
  }
  // No credentials file yet: an empty encrypted one, as Node-RED writes it, so it does not warn "Encrypted credentials not found".
  const credFile = path.join(userDir, 'flows_cred.json');
  if (!fs.existsSync(credFile)) {
    const iv = crypto.randomBytes(16);
    const cipher = crypto.createCipheriv('aes-256-ctr', crypto.createHash('sha256').update(secret).digest(), iv);
    fs.writeFileSync(
      credFile,
      JSON.stringify(
        { $: iv.toString('hex') + cipher.update('{}', 'utf8', 'base64') + cipher.final('base64') },
        null,
        4,
      ),
      { mode: 0o600 },
    );
  }
  return secret;
}

const LEVELS = { 10: 'fatal', 20: 'error', 30: 'warn', 40: 'info', 50: 'debug', 60: 'trace' };
// Node-RED's own log lines at warn and above, less the one an embedded runtime without projects always prints.
const logging = {
  console: { level: 'off' },
  start: {
    level: 'warn',
    metrics: false,
    audit: false,
    handler: () => (m) => {
      const text = m.msg instanceof Error ? m.msg.stack : typeof m.msg === 'string' ? m.msg : util.inspect(m.msg);
      if (/^Projects disabled/.test(text)) return;
      const who = m.type ? `[${m.type}:${m.name || m.id}] ` : '';
      process.stdout.write(`${new Date().toISOString()} - [${LEVELS[m.level] || m.level}] ${who}${text}\n`);
    },
  },
};

async function main() {
  fs.mkdirSync(userDir, { recursive: true });
  const firstStart = !fs.existsSync(path.join(userDir, 'flows.json'));
  // The same module instance the config nodes load (require follows the symlink), so they share this hub.
  const { acquireLocalHub, releaseLocalHub } = require(path.join(root, 'nodes', 'localhub', 'shared-hub.js'));
  const hub = await acquireLocalHub({ mqttsPort: 8883, amqpsPort: 5671, httpsPort: 8443, dpsPort: 8884 }, userDir);
  const device = 'MyDevice';
  let deviceString;
  try {
    deviceString = hub.deviceConnectionString(device);
  } catch {
    await hub.registerDevice(device);
    deviceString = hub.deviceConnectionString(device);
  }
  const red = await startNodeRed({
    userDir,
    port,
    credentialSecret: credentialSecret(),
    settings: { logging },
    flows: firstStart ? JSON.parse(fs.readFileSync(TUTORIAL, 'utf8')) : undefined,
  });
  process.stdout.write(
    [
      '',
      `  Node-RED editor:   ${red.url}`,
      '',
      '  Local hub (for official Azure SDK apps; trust its CA with NODE_EXTRA_CA_CERTS):',
      `    CA certificate:    ${hub.caCertPath}`,
      `    ports:             MQTT ${hub.ports.mqtts}, AMQP ${hub.ports.amqps}, HTTPS and WebSockets ${hub.ports.https}, DPS ${hub.ports.dps}`,
      `    hub (iothubowner): ${hub.hubConnectionString}`,
      `    device ${device}:   ${deviceString}`,
      `    DPS:               ID scope ${hub.idScope}, provisioning host ${hub.provisioningHost} (MQTT and HTTPS)`,
      '',
      '  Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );

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
