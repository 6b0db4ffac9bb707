// mmap'd ArrayBuffers: shared writes, safe munmap, read-only copies, GC, errors.
import t from 'tap';
import { readSync, writeSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as n from '../../native/index.js';
import { mapsWith, tick } from './util.js';

const RW = n.PROT_READ | n.PROT_WRITE;
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function readAt(fd: number, len: number, pos: number): Buffer {
  const b = Buffer.alloc(len);
  return b.subarray(0, readSync(fd, b, 0, len, pos));
}

t.test('writes through the view reach the file and other mappings', async (t) => {
  const fd = n.memfdCreate('mmap-rw', 8192);
  t.equal(n.fileSize(fd), 8192);
  const ab = n.mmap(fd, 0, 8192, RW);
  t.ok(ab instanceof ArrayBuffer);
  t.equal(ab.byteLength, 8192);
  const view = new Uint8Array(ab);
  t.equal(view[100], 0, 'a fresh memfd reads zero');
  view.set(Buffer.from('through the view'), 4096);
  t.equal(readAt(fd, 16, 4096).toString(), 'through the view', 'visible via the fd');
  writeSync(fd, Buffer.from('via fd'), 0, 6, 10);
  t.equal(Buffer.from(ab, 10, 6).toString(), 'via fd', 'file writes visible in the view');

  const second = n.mmap(fd, 4096, 16, RW);
  t.equal(Buffer.from(second).toString(), 'through the view', 'second mapping at an offset');
  new Uint8Array(second)[0] = 'T'.charCodeAt(0);
  t.equal(String.fromCharCode(view[4096]!), 'T', 'shared between mappings');

  const odd = n.mmap(fd, 4096 + 8, 4, n.PROT_READ | n.PROT_WRITE);
  t.equal(Buffer.from(odd).toString(), 'the ', 'an unaligned offset maps the right bytes');
  [ab, second, odd].forEach((m) => n.munmap(m));
  n.close(fd);
});

t.test('munmap detaches first: views go empty, nothing crashes, twice is fine', async (t) => {
  const fd = n.memfdCreate('mmap-detach', 4096);
  const ab = n.mmap(fd, 0, 4096, RW);
  const view = new Uint8Array(ab);
  const buf = Buffer.from(ab);
  const dv = new DataView(ab);
  view[0] = 42;
  t.equal(mapsWith('memfd:mmap-detach').length, 1, 'mapped');
  n.munmap(ab);
  t.equal(mapsWith('memfd:mmap-detach').length, 0, 'unmapped at once');
  t.equal(ab.byteLength, 0);
  t.equal(view.byteLength, 0);
  t.equal(view.length, 0);
  t.equal(view[0], undefined, 'reads give undefined, not a SIGSEGV');
  view[0] = 1; // ignored
  t.equal(buf.length, 0);
  t.equal(buf.toString(), '');
  t.throws(() => dv.getUint8(0), TypeError, 'DataView throws');
  t.throws(() => new Uint8Array(ab), TypeError, 'no new views on a detached buffer');
  t.doesNotThrow(() => n.munmap(ab), 'second munmap is a no-op');
  t.equal(readAt(fd, 1, 0)[0], 42, 'data written before munmap stays in the file');

  // a detached view is refused by recvmsg/sendmsg instead of crashing
  const [a, b] = n.socketpair();
  n.sendmsg(a, Buffer.from('x'), 0, 1);
  t.throws(() => n.recvmsg(b, view, 0, 1, new Int32Array(2)), RangeError);
  t.throws(() => n.sendmsg(a, view, 0, 1), RangeError);
  [a, b, fd].forEach((x) => n.close(x));
});

t.test('munmap refuses what mmap did not make', async (t) => {
  t.throws(() => n.munmap(new ArrayBuffer(8)), TypeError);
  t.throws(() => n.munmap(Buffer.alloc(8).buffer as ArrayBuffer), TypeError);
  t.throws(() => n.munmap(new Uint8Array(8) as unknown as ArrayBuffer), TypeError);
  t.throws(() => n.munmap({} as ArrayBuffer), TypeError);
  t.throws(() => n.munmap(undefined as unknown as ArrayBuffer), TypeError);
});

t.test('PROT_READ gives a view that sees the file and cannot corrupt it', async (t) => {
  const fd = n.memfdCreate('mmap-ro', 4096);
  writeSync(fd, Buffer.from('original'), 0, 8, 0);
  const ro = n.mmap(fd, 0, 4096, n.PROT_READ);
  const v = new Uint8Array(ro);
  t.equal(Buffer.from(ro, 0, 8).toString(), 'original');
  writeSync(fd, Buffer.from('ORIG'), 0, 4, 0);
  t.equal(Buffer.from(ro, 0, 8).toString(), 'ORIGinal', 'later file writes are visible');
  v[0] = 0x21; // would be SIGSEGV on a PROT_READ page; here a private copy
  t.equal(readAt(fd, 8, 0).toString(), 'ORIGinal', 'a stray write does not reach the file');
  n.munmap(ro);
  n.close(fd);
});

t.test('mmap errors', async (t) => {
  const fd = n.memfdCreate('mmap-err', 4096);
  t.throws(() => n.mmap(999_999, 0, 4096, RW), { code: 'EBADF', errno: n.EBADF, syscall: 'mmap' });
  const efd = n.eventfd(0);
  t.throws(() => n.mmap(efd, 0, 4096, RW), { code: 'ENODEV' }, 'an eventfd cannot be mapped');
  t.throws(() => n.mmap(fd, 0, 0, RW), RangeError, 'length 0');
  t.throws(() => n.mmap(fd, 0, -1, RW), RangeError);
  t.throws(() => n.mmap(fd, -4096, 4096, RW), RangeError);
  t.throws(() => n.mmap(fd, 0.5, 4096, RW), RangeError);
  t.throws(() => n.mmap(fd, 0, 4096, 0), RangeError, 'PROT_NONE would crash on access');
  t.throws(() => n.mmap(fd, 0, 4096, 4), RangeError);
  t.throws(() => n.mmap(fd, 0, '4096' as unknown as number, RW), TypeError);
  t.throws(() => n.mmap(fd, 0, 2 ** 53, RW), RangeError);
  // above the largest ArrayBuffer Node makes (4 GiB on Node 20): throws, maps nothing
  n.ftruncate(fd, 5 * 2 ** 30);
  t.throws(() => n.mmap(fd, 0, 5 * 2 ** 30, RW), { code: 'ERR_BUFFER_TOO_LARGE' });
  t.equal(mapsWith('memfd:mmap-err').length, 0, 'nothing left mapped');
  // a sealed memfd refuses a shared writable mapping but allows a read-only one
  n.ftruncate(fd, 4096);
  n.addSeals(fd, n.F_SEAL_WRITE);
  t.throws(() => n.mmap(fd, 0, 4096, RW), { code: 'EPERM' });
  n.munmap(n.mmap(fd, 0, 4096, n.PROT_READ));
  [fd, efd].forEach((x) => n.close(x));
});

t.test('mappings dropped without munmap are unmapped by GC', async (t) => {
  const fd = n.memfdCreate('mmap-gc', 65536);
  (() => {
    for (let i = 0; i < 50; i++) new Uint8Array(n.mmap(fd, 0, 65536, RW))[i] = i;
  })();
  t.equal(mapsWith('memfd:mmap-gc').length, 50);
  for (let i = 0; i < 20 && mapsWith('memfd:mmap-gc').length > 0; i++) {
    gc();
    await tick(10);
  }
  t.equal(mapsWith('memfd:mmap-gc').length, 0, 'finalizers unmapped them all');
  // munmap'd buffers then collected must not double-unmap (a new mapping survives)
  for (let i = 0; i < 20; i++) n.munmap(n.mmap(fd, 0, 4096, RW));
  const keep = n.mmap(fd, 0, 65536, RW);
  for (let i = 0; i < 5; i++) {
    gc();
    await tick(10);
  }
  t.equal(new Uint8Array(keep)[7], 7, 'a live mapping stays intact after GC of unmapped ones');
  t.equal(mapsWith('memfd:mmap-gc').length, 1);
  n.munmap(keep);
  n.close(fd);
});

t.test('fileSize, ftruncate, seals', async (t) => {
  const fd = n.memfdCreate('seals', 100);
  t.equal(n.fileSize(fd), 100);
  n.ftruncate(fd, 8192);
  t.equal(n.fileSize(fd), 8192);
  t.equal(n.getSeals(fd), 0, 'a fresh memfd has no seals');
  n.addSeals(fd, n.F_SEAL_SHRINK | n.F_SEAL_GROW);
  t.equal(n.getSeals(fd), n.F_SEAL_SHRINK | n.F_SEAL_GROW);
  t.throws(() => n.ftruncate(fd, 4096), { code: 'EPERM', syscall: 'ftruncate' }, 'cannot shrink');
  n.addSeals(fd, n.F_SEAL_SEAL);
  t.throws(() => n.addSeals(fd, n.F_SEAL_WRITE), { code: 'EPERM' });
  const [a, b] = n.socketpair();
  t.equal(n.getSeals(a), 0, 'not sealable: 0');
  t.throws(() => n.getSeals(999_999), { code: 'EBADF' });
  t.throws(() => n.fileSize(999_999), { code: 'EBADF' });
  t.throws(() => n.memfdCreate('x'.repeat(300), 0), RangeError);
  t.throws(() => n.memfdCreate('a\0b', 0), TypeError);
  [fd, a, b].forEach((x) => n.close(x));
});
