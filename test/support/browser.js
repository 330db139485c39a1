'use strict';
// The editor in a real browser for the e2e tests: Node-RED with the given flows in a fresh user directory, and Debian's
// chromium driven by playwright-core. Without chromium the test says so and skips, except in CI, where it fails.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startNodeRed, root } = require('../../scripts/node-red-runtime');

const CHROMIUM = '/usr/bin/chromium';
const shots = path.join(root, 'test-output', 'e2e');

/**
 * Resolves with { page, red, userDir } once the editor's palette shows, or undefined when the test was skipped.
 * flowsFor(userDir) gives the flows; everything is closed after the test.
 */
async function openEditor(t, { flowsFor, prefix, viewport }) {
  if (!fs.existsSync(CHROMIUM)) {
    if (process.env.CI) assert.fail(`${CHROMIUM} is missing: .ci/run installs the Debian chromium package`);
    t.skip(`${CHROMIUM} not installed (apt-get install chromium); browser test skipped`);
    return undefined;
  }
  const { chromium } = require('playwright-core');
  fs.mkdirSync(shots, { recursive: true });
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const red = await startNodeRed({
    userDir,
    flows: flowsFor(userDir),
    logLevel: 'warn',
    credentialSecret: 'e2e-test-secret',
  });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
    ],
  });
  t.after(async () => {
    await browser.close();
    await red.stop();
    const { releaseLocalHub } = require(path.join(root, 'nodes', 'localhub', 'shared-hub.js'));
    await releaseLocalHub(0);
    fs.rmSync(userDir, { recursive: true, force: true });
  });
  const page = await browser.newPage({ viewport });
  // Conditions, not times: on a busy machine an editor round trip (a deploy, a status, an admin call) can take longer
  // than playwright's default 30 s.
  page.setDefaultTimeout(90_000);
  return { page, red, userDir };
}

module.exports = { openEditor, shots };
