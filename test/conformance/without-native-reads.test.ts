// The whole conformance suite once more with the server's native reads off,
// so that every message takes the TypeScript path: the suite's exact-reply
// assertions then hold for both paths (its other files run with them on).
// The one server it starts as a separate process (dma-flood's) keeps them on.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { useNativeReads } from './helpers.js';

useNativeReads(false);
const here = fileURLToPath(import.meta.url);
const dir = path.dirname(here);
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.test.js') && f !== path.basename(here)).sort()) {
  await import(path.join(dir, file));
}
