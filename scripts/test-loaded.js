'use strict';
// `npm run test:loaded [-- name...]`: the suite (or the files whose path holds a name) with two CPU-bound processes
// running beside it for its whole length, as on a loaded CI runner or a Raspberry Pi. Every file's process is
// checked for handles left open after its tests (test/support/handle-check.js), as in `npm test`.
const { spawn } = require('node:child_process');
const path = require('node:path');

const burners = [0, 1].map(() => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
const stopBurners = () => {
  for (const b of burners) b.kill('SIGKILL');
};
process.on('exit', stopBurners);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

console.log(
  `# test:loaded: two CPU-bound processes (pids ${burners.map((b) => b.pid).join(', ')}) run beside the suite`,
);
const suite = spawn(process.execPath, [path.join(__dirname, 'test.js'), ...process.argv.slice(2)], {
  stdio: 'inherit',
  env: { ...process.env, IOTHUB_TEST_LOADED: '1' },
});
suite.on('exit', (code, signal) => {
  stopBurners();
  process.exit(code ?? (signal ? 1 : 0));
});
