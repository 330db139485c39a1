'use strict';
// What the redeploy tests measure a runtime by, and how they talk to its admin API.
const http = require('node:http');

/** Live handles of this process by kind (sockets, TLS, timers, immediates...). */
function resources() {
  const counts = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

/** Closing sockets take a moment to go (longer on a busy machine): measure() again for up to 15 s until it matches baseline; returns the last. */
async function settledTo(baseline, measure = resources) {
  let now = measure();
  for (let i = 0; i < 150 && JSON.stringify(now) !== JSON.stringify(baseline); i++) {
    await new Promise((r) => setTimeout(r, 100));
    now = measure();
  }
  return now;
}

/** A JSON request to Node-RED's admin API on 127.0.0.1; a POST /flows deploys with the given type. */
function adminRequest(port, method, urlPath, body, deploymentType = 'full') {
  return new Promise((resolve, reject) => {
    const data = body ? JSON.stringify(body) : undefined;
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        headers: {
          'content-type': 'application/json',
          'Node-RED-Deployment-Type': deploymentType,
          ...(data ? { 'content-length': Buffer.byteLength(data) } : {}),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode, text }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

module.exports = { resources, settledTo, adminRequest };
