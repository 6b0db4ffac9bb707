// Bad JS arguments throw TypeError/RangeError and never reach a syscall.
import t from 'tap';
import * as n from '../../native/index.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
const call = (f: (...a: any[]) => unknown, ...a: unknown[]) => () => f(...a);

t.test('fd arguments', async (t) => {
  for (const [name, f] of [
    ['accept', n.accept],
    ['close', n.close],
    ['fileSize', n.fileSize],
    ['getSeals', n.getSeals],
    ['eventfdRead', n.eventfdRead],
  ] as const) {
    t.throws(call(f), TypeError, `${name}() without fd`);
    t.throws(call(f, '3'), TypeError, `${name}('3')`);
    t.throws(call(f, -1), RangeError, `${name}(-1)`);
    t.throws(call(f, 1.5), RangeError, `${name}(1.5)`);
    t.throws(call(f, NaN), RangeError, `${name}(NaN)`);
    t.throws(call(f, 2 ** 31), RangeError, `${name}(2^31)`);
  }
  const e = t.throws(call(n.close, -1)) as Error & { code?: string };
  t.equal(e.code, 'ERR_OUT_OF_RANGE');
  t.match(e.message, /^close: fd must be an integer/);
});

t.test('recvmsg/sendmsg buffers, ranges and meta', async (t) => {
  const [a, b] = n.socketpair();
  const buf = Buffer.alloc(8);
  const meta = new Int32Array(4);
  t.throws(call(n.recvmsg, b, 'str', 0, 1, meta), TypeError, 'string buffer');
  t.throws(call(n.recvmsg, b, new Uint16Array(4), 0, 1, meta), TypeError, 'Uint16Array');
  t.throws(call(n.recvmsg, b, new ArrayBuffer(8), 0, 1, meta), TypeError, 'bare ArrayBuffer');
  t.throws(call(n.recvmsg, b, new DataView(new ArrayBuffer(8)), 0, 1, meta), TypeError, 'DataView');
  t.throws(call(n.recvmsg, b, buf, 0, 9, meta), RangeError, 'length past the end');
  t.throws(call(n.recvmsg, b, buf, 9, 0, meta), RangeError, 'offset past the end');
  t.throws(call(n.recvmsg, b, buf, 4, 5, meta), RangeError, 'offset+length past the end');
  t.throws(call(n.recvmsg, b, buf, 0, 0, meta), RangeError, 'length 0 would read as EOF');
  t.throws(call(n.recvmsg, b, buf, -1, 1, meta), RangeError);
  t.throws(call(n.recvmsg, b, buf, 0, 1), TypeError, 'missing meta');
  t.throws(call(n.recvmsg, b, buf, 0, 1, new Uint32Array(4)), TypeError, 'meta must be Int32Array');
  t.throws(call(n.recvmsg, b, buf, 0, 1, [0, 0, 0]), TypeError, 'meta as a plain array');
  t.throws(call(n.recvmsg, b, buf, 0, 1, new Int32Array(1)), RangeError, 'meta too short');

  // a subarray view is addressed relative to itself
  const backing = Buffer.alloc(16);
  const sub = backing.subarray(8, 12);
  n.sendmsg(a, Buffer.from('abc'), 0, 3);
  t.throws(call(n.recvmsg, b, sub, 0, 5, meta), RangeError, 'bounded by the view, not its buffer');
  t.equal(n.recvmsg(b, sub, 1, 3, meta), 3);
  t.equal(backing.toString('latin1', 8, 12), '\0abc');

  t.throws(call(n.sendmsg, a, buf, 0, 9), RangeError);
  t.throws(call(n.sendmsg, a, buf, 0, 1, 5), TypeError, 'fds must be array-like');
  t.throws(call(n.sendmsg, a, buf, 0, 1, ['x']), TypeError, 'fds must be numbers');
  t.throws(call(n.sendmsg, a, buf, 0, 1, [-1]), RangeError);
  t.throws(call(n.sendmsg, a, buf, 0, 0, [a]), RangeError, 'fds need a byte');
  t.throws(call(n.sendmsg, a, buf, 0, 1, { length: 1e9 }), RangeError, 'huge fds.length');
  t.equal(n.sendmsg(a, buf, 0, 0), 0, 'an empty send without fds is allowed');
  t.equal(n.sendmsg(a, buf, 8, 0), 0, 'offset at the end with length 0');
  t.equal(n.sendmsg(a, new Uint8Array(2), 0, 1, { length: 1, 0: b }), 1, 'any array-like fds');
  const got = new Int32Array(3);
  t.equal(n.recvmsg(b, buf, 0, 8, got), 1);
  t.equal(got[0], 1);
  n.close(got[2]!);
  n.close(a);
  n.close(b);
});

t.test('strings and numbers elsewhere', async (t) => {
  t.throws(call(n.listenUnix, 5, 1), TypeError);
  t.throws(call(n.listenUnix, '/tmp/x\0y.sock', 1), TypeError, 'NUL in a path');
  t.throws(call(n.listenUnix, '/tmp/ok.sock', -1), RangeError, 'backlog');
  t.throws(call(n.listenUnix, 'x'.repeat(5000), 1), RangeError, 'absurd path');
  t.throws(call(n.connectUnix), TypeError);
  t.throws(call(n.memfdCreate, 'm', -1), RangeError);
  t.throws(call(n.memfdCreate, null, 1), TypeError);
  t.throws(call(n.ftruncate, 0, -1), RangeError);
  t.throws(call(n.addSeals, 0, -1), RangeError);
  t.throws(call(n.systemErrnoName, 5000), RangeError);
  t.throws(call(n.watch), TypeError);
  t.throws(call(n.watchSet, {}, 1), TypeError);
});
