// Builds the native addon with node-gyp against the Node headers that ship with
// the running node (no header download): --nodedir is two levels above node.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nodedir = path.resolve(path.dirname(process.execPath), '..');
// npm puts its bundled node-gyp on PATH for lifecycle scripts and names it here.
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp
  ? [process.execPath, [gyp]]
  : ['node-gyp', []];
const r = spawnSync(cmd, [...args, 'rebuild', `--nodedir=${nodedir}`, '--jobs=2'], {
  cwd: root,
  stdio: 'inherit',
});
if (r.error) {
  console.error(`native build: cannot run node-gyp: ${r.error.message}`);
  process.exit(1);
}
process.exit(r.status ?? 1);
