// Builds the native addon with node-gyp against the Node headers that ship with
// the running node (no header download): --nodedir is two levels above node.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nodedir = path.resolve(path.dirname(process.execPath), '..');
// npm names its bundled node-gyp for lifecycle scripts; outside npm, use the
// copy that ships with npm next to this node.
const bundled = path.join(nodedir, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
const gyp = process.env.npm_config_node_gyp || (fs.existsSync(bundled) ? bundled : null);
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
