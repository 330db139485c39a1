'use strict';
// How many device connections a HubSession sets up at once (ConnectGate, src/core/connect-gate.ts).
const test = require('node:test');
const assert = require('node:assert/strict');
const { ConnectGate } = require('../../nodes/core/connect-gate.js');

test('at most `limit` attempts at once, the rest in order of arrival; a release frees its slot once', () => {
  const gate = new ConnectGate(2);
  const started = [];
  const releases = {};
  for (const id of ['a', 'b', 'c', 'd'])
    gate.enter((release) => {
      started.push(id);
      releases[id] = release;
    });
  assert.deepEqual(started, ['a', 'b']);
  releases.a();
  releases.a();
  assert.deepEqual(started, ['a', 'b', 'c']);
  releases.b();
  assert.deepEqual(started, ['a', 'b', 'c', 'd']);
});

test('a cancelled wait leaves the line: the next one takes the slot', () => {
  const gate = new ConnectGate(1);
  const started = [];
  let releaseA;
  gate.enter((r) => {
    started.push('a');
    releaseA = r;
  });
  const cancelB = gate.enter(() => started.push('b'));
  gate.enter(() => started.push('c'));
  cancelB();
  releaseA();
  assert.deepEqual(started, ['a', 'c']);
});
