// Runs every compiled test file with tap, passes its output through, and ends
// with one plain summary line ("tests: N passed, N failed[, N skipped]") taken
// from tap's own closing count. Exits with tap's exit code.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tapBin = path.join(root, 'node_modules/tap/dist/esm/run.mjs');
const args = process.argv.slice(2);
const child = spawn(process.execPath, [tapBin, ...(args.length ? args : ['dist/test/**/*.test.js'])], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let tail = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString()).slice(-4096);
});
child.on('close', (code, signal) => {
  const m = /# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?(?:, skip: (\d+))?(?:, todo: (\d+))?/.exec(tail);
  if (m) {
    const passed = Number(m[2] ?? 0);
    const failed = Number(m[3] ?? 0);
    const skipped = Number(m[4] ?? 0) + Number(m[5] ?? 0);
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  } else {
    process.stdout.write('\ntests: no summary from tap\n');
  }
  process.exit(code ?? (signal ? 1 : 0));
});
