// MIG_DATA_READ / MIG_DATA_WRITE.
import t from 'tap';
import {
  decodeMigDataReadRequest, decodeMigDataWriteRequest, encodeMigDataReadRequest, encodeMigDataWriteRequest,
} from '../../protocol/commands/mig-data.js';
import { QEMU_LIMITS as L, errnoOf, with32 } from './helpers.js';

t.test('MIG_DATA_READ round trip', async (t) => {
  const req = decodeMigDataReadRequest(encodeMigDataReadRequest(100), L, 0);
  t.same(req, { argsz: 108, size: 100 });
});

t.test('MIG_DATA_WRITE round trip', async (t) => {
  const p = encodeMigDataWriteRequest(Buffer.from([1, 2, 3, 4]));
  const req = decodeMigDataWriteRequest(p, L, 0);
  t.same([req.argsz, req.size, [...req.data]], [12, 4, [1, 2, 3, 4]]);
  t.equal(req.data.buffer, p.buffer);
});

t.test('MIG_DATA validation (EINVAL, as libvfio-user)', async (t) => {
  const rd = encodeMigDataReadRequest(16);
  const wr = encodeMigDataWriteRequest(Buffer.alloc(4));
  const cases: Array<[string, () => unknown]> = [
    ['read: short', () => decodeMigDataReadRequest(rd.subarray(0, 4), L, 0)],
    ['read: long', () => decodeMigDataReadRequest(Buffer.concat([rd, Buffer.alloc(1)]), L, 0)],
    ['read: size > max_data_xfer_size', () => decodeMigDataReadRequest(encodeMigDataReadRequest(L.maxDataXferSize + 1), L, 0)],
    ['read: argsz < 8 + size', () => decodeMigDataReadRequest(encodeMigDataReadRequest(16, 23), L, 0)],
    ['read: an fd', () => decodeMigDataReadRequest(rd, L, 1)],
    ['write: short data', () => decodeMigDataWriteRequest(wr.subarray(0, 10), L, 0)],
    ['write: extra data', () => decodeMigDataWriteRequest(Buffer.concat([wr, Buffer.alloc(1)]), L, 0)],
    ['write: argsz too small', () => decodeMigDataWriteRequest(with32(wr, 0, 11), L, 0)],
    ['write: size > max', () => decodeMigDataWriteRequest(with32(wr, 4, L.maxDataXferSize + 1), L, 0)],
    ['write: an fd', () => decodeMigDataWriteRequest(wr, L, 1)],
  ];
  for (const [name, fn] of cases) t.equal(errnoOf(fn), 'EINVAL', name);
});
