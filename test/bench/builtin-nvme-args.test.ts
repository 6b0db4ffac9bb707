// QEMU's own NVMe controller as the NVMe bench sets it up: its largest
// transfer (mdts) as ours, and a value QEMU cannot take refused here.
import t from 'tap';
import { builtinNvmeArgs } from '../../qemu-configs/qemu-args.js';
import { MDTS } from '../../devices/nvme/constants.js';

t.test('mdts goes on the controller; absent, QEMU keeps its default', async (t) => {
  const ctrl = (a: string[]) => a[a.indexOf('-device') + 1]!;
  t.match(ctrl(builtinNvmeArgs(['/tmp/a.img'], { id: 'q', mdts: MDTS })), new RegExp(`^nvme,id=q,.*,mdts=${MDTS}$`));
  t.notMatch(ctrl(builtinNvmeArgs(['/tmp/a.img'], { id: 'q' })), /mdts/);
  for (const bad of [-1, 16, 7.5, NaN]) t.throws(() => builtinNvmeArgs(['/tmp/a.img'], { mdts: bad }), RangeError, `mdts ${bad}`);
});
