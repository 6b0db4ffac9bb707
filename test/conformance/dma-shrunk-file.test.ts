// A client truncates the unsealed memfd it passed in DMA_MAP. The device's
// next DMA into that memory is a fault (EFAULT), the server keeps serving;
// a sealed memfd (QEMU's memory-backend-memfd) is mapped, zero copy.
import { readSync } from 'node:fs';
import t from 'tap';
import { Command } from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import { encodeDmaMapRequest } from '../../protocol/commands/dma-map.js';
import {
  DEVICE, assertReply, assertServes, native, openClient, patternMemfd, rejectsErrno, send, startGpio,
} from './helpers.js';

t.test('DMA into an unsealed memfd the client shrank: EFAULT, the server lives', async (t) => {
  const fx = await startGpio(t);
  const c = await openClient(t, fx);
  const mem = patternMemfd(0x4000);
  t.teardown(() => native.close(mem.fd));
  const dma = fx.ctx.dma(DEVICE);
  const m = await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x100000n, size: 0x4000n }), { fds: [mem.fd] });
  assertReply(t, m.reply, m, Buffer.alloc(0), 'DMA_MAP of an unsealed memfd');
  t.same(await dma.read(0x101000n, 8), mem.data.subarray(0x1000, 0x1008), 'the device reads it');
  native.ftruncate(mem.fd, 0);
  await rejectsErrno(t, dma.read(0x101000n, 8), Errno.EFAULT, 'read after the truncate');
  await rejectsErrno(t, dma.write(0x102000n, Buffer.from('late')), Errno.EFAULT, 'write after the truncate');
  t.equal(native.fileSize(mem.fd), 0, 'the write did not grow the file back');
  await assertServes(t, c, 'after the faults');
});

t.test('a sealed memfd over the socket is mapped: the device writes the file in place', async (t) => {
  const fx = await startGpio(t);
  const c = await openClient(t, fx);
  const mem = patternMemfd(0x4000);
  t.teardown(() => native.close(mem.fd));
  native.addSeals(mem.fd, native.F_SEAL_SHRINK | native.F_SEAL_GROW);
  const m = await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x100000n, size: 0x4000n }), { fds: [mem.fd] });
  assertReply(t, m.reply, m, Buffer.alloc(0), 'DMA_MAP of a sealed memfd');
  const view = fx.ctx.dma(DEVICE).mappedView(0x100010, 4, 2);
  t.ok(view, 'a direct view of the memory');
  view!.set([0xde, 0xad, 0xbe, 0xef]);
  const b = Buffer.alloc(4);
  readSync(mem.fd, b, 0, 4, 0x10);
  t.same([...b], [0xde, 0xad, 0xbe, 0xef], 'the view is the file');
});
