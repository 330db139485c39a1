'use strict';
// Preloaded into every test file's process (scripts/test.js): when the file's tests are done, every socket, server,
// timer and child process they opened must be gone. A leftover fails the file by name and kind, instead of keeping
// the process alive until the runner's time-out.
if (process.env.NODE_TEST_CONTEXT) {
  const { after } = require('node:test');
  const count = () => {
    const c = {};
    for (const r of process.getActiveResourcesInfo()) c[r] = (c[r] ?? 0) + 1;
    return c;
  };
  const baseline = count();
  const extra = (now) =>
    Object.entries(now)
      .filter(([k, n]) => n > (baseline[k] ?? 0))
      .map(([k, n]) => `${k} ${n - (baseline[k] ?? 0)}`);
  // Registered once the file's own code ran, so it comes after the file's own after() hooks (which stop its servers).
  setImmediate(() =>
    after(async () => {
      // Sockets and child processes take a moment to go after their close: wait for the count, up to 15 s.
      const deadline = Date.now() + 15_000;
      let left = extra(count());
      while (left.length > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100).unref());
        left = extra(count());
      }
      if (left.length === 0) return;
      // Whatever holds the process open would keep it alive until the runner's time-out: report, then leave.
      setTimeout(() => process.exit(1), 2000).unref();
      throw new Error(
        `handles left open after this file's tests: ${left.join(', ')} (baseline ${JSON.stringify(baseline)})`,
      );
    }),
  );
}
