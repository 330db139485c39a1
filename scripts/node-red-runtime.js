'use strict';
// Embeds a Node-RED runtime with this package installed in its user directory.
// Used by `npm start` and by the browser test.
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const root = path.join(__dirname, '..');

function installPackage(userDir) {
  fs.mkdirSync(path.join(userDir, 'node_modules', '@iothub-c2d'), { recursive: true });
  const link = path.join(userDir, 'node_modules', '@iothub-c2d', 'node-red');
  if (!fs.existsSync(link)) fs.symlinkSync(root, link, 'dir');
  const pkg = path.join(userDir, 'package.json');
  if (!fs.existsSync(pkg)) {
    fs.writeFileSync(
      pkg,
      JSON.stringify(
        { name: 'node-red-project', private: true, dependencies: { '@iothub-c2d/node-red': '*' } },
        null,
        2,
      ),
    );
  }
}

/**
 * @param {{userDir: string, port?: number, flows?: object[], logLevel?: string, nodeRedPath?: string, credentialSecret?: string, settings?: object}} o
 * @returns {Promise<{url: string, port: number, RED: object, stop: () => Promise<void>}>}
 */
async function startNodeRed(o) {
  installPackage(o.userDir);
  if (o.flows) fs.writeFileSync(path.join(o.userDir, 'flows.json'), JSON.stringify(o.flows, null, 2));
  const redPath = o.nodeRedPath || process.env.NODE_RED_PATH || require.resolve('node-red');
  const RED = require(redPath);
  const express = require(require.resolve('express', { paths: [redPath] }));
  const app = express();
  const server = http.createServer(app);
  RED.init(server, {
    userDir: o.userDir,
    uiHost: '127.0.0.1',
    httpAdminRoot: '/',
    httpNodeRoot: '/api',
    flowFile: 'flows.json',
    credentialSecret: o.credentialSecret,
    logging: { console: { level: o.logLevel || 'info', metrics: false, audit: false } },
    editorTheme: { tours: false, palette: { catalogues: [] } },
    externalModules: { palette: { allowInstall: false } },
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
    ...(o.settings || {}),
  });
  app.use('/', RED.httpAdmin);
  app.use('/api', RED.httpNode);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, '127.0.0.1', resolve);
  });
  await RED.start();
  const port = server.address().port;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    RED,
    stop: async () => {
      await RED.stop();
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    },
  };
}

module.exports = { startNodeRed, installPackage, root };
