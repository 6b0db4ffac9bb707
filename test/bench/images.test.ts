// The guest I/O benches' images: one per device, all made the same way.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { allocatedImages } from '../../bench/lib.js';

t.test('every path gets a fully allocated image of zeros, and no template is left behind', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-images-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const bytes = 20 << 20; // not a multiple of the 16 MiB write
  const paths = ['a.img', 'b.img', 'c.img'].map((n) => path.join(dir, n));
  fs.writeFileSync(paths[1]!, 'old contents'); // replaced, not kept
  allocatedImages(paths, bytes);
  t.same(fs.readdirSync(dir).sort(), ['a.img', 'b.img', 'c.img']);
  for (const p of paths) {
    const st = fs.statSync(p);
    t.equal(st.size, bytes, `${path.basename(p)}: size`);
    t.ok(st.blocks * 512 >= bytes, `${path.basename(p)}: allocated, not sparse (${st.blocks} blocks)`);
    const data = fs.readFileSync(p);
    t.ok(data.every((b) => b === 0), `${path.basename(p)}: all zero`);
  }
});

t.test('no paths is a mistake of the caller', async (t) => {
  t.throws(() => allocatedImages([], 1 << 20), RangeError);
});
