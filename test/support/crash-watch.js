'use strict';
// Records what escapes every handler (uncaught exceptions, unhandled rejections) while a file's cases run, so each case
// can fail by name instead of the process ending, and the next case starts clean.
const assert = require('node:assert/strict');

function watchCrashes() {
  const uncaught = [];
  const unhandled = [];
  const onUncaught = (err) => uncaught.push(err);
  const onUnhandled = (err) => unhandled.push(err);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUnhandled);
  return {
    /** Fails when anything escaped since the last clear(). */
    assertNone() {
      assert.deepEqual(uncaught.map(String), [], 'no uncaught exception');
      assert.deepEqual(unhandled.map(String), [], 'no unhandled rejection');
    },
    clear() {
      uncaught.length = 0;
      unhandled.length = 0;
    },
    stop() {
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onUnhandled);
    },
  };
}

module.exports = { watchCrashes };
