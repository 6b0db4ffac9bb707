// channel(): recv/send with buffers registered once, fds reported in meta,
// argument checks, buffer replacement, and -EBADF after close.
import t from 'tap';
import * as n from '../../native/index.js';

t.test('recv and send move bytes through the registered buffers', async (t) => {
  const before = n.fdCount();
  const [a, b] = n.socketpair();
  const meta = new Int32Array(2 + 4);
  const rbuf = Buffer.alloc(64);
  const wbuf = Buffer.from('..hello..world');
  const ch = n.channel(a, meta);
  t.equal(ch.recv(0, 8), -n.EBADF, 'no buffers yet: -EBADF');
  ch.setBuffers(rbuf, wbuf);

  t.equal(ch.recv(0, 64), -n.EAGAIN, 'empty socket: -EAGAIN');
  t.equal(ch.send(2, 5), 5, 'sends wbuf[2, 7)');
  const got = Buffer.alloc(16);
  t.equal(n.recvmsg(b, got, 0, 16, meta), 5);
  t.equal(got.subarray(0, 5).toString(), 'hello');

  t.equal(n.sendmsg(b, Buffer.from('abcdef'), 0, 6), 6);
  t.equal(ch.recv(10, 4), 4, 'a short read into rbuf[10, 14)');
  t.equal(rbuf.subarray(10, 14).toString(), 'abcd');
  t.equal(rbuf[9], 0, 'nothing before the offset');
  t.equal(ch.recv(0, 64), 2, 'the rest');
  t.equal(rbuf.subarray(0, 2).toString(), 'ef');
  t.same([meta[0], meta[1]], [0, 0], 'no fds, no flags');

  // Replacing one buffer keeps the other.
  const rbuf2 = Buffer.alloc(8);
  ch.setBuffers(rbuf2, null);
  t.equal(n.sendmsg(b, Buffer.from('xyz'), 0, 3), 3);
  t.equal(ch.recv(0, 8), 3);
  t.equal(rbuf2.subarray(0, 3).toString(), 'xyz', 'reads land in the new buffer');
  t.equal(rbuf.subarray(0, 2).toString(), 'ef', 'the old one is untouched');
  t.equal(ch.send(9, 5), 5, 'the send buffer is still wbuf');
  t.equal(n.recvmsg(b, got, 0, 16, meta), 5);
  t.equal(got.subarray(0, 5).toString(), 'world');

  n.close(b);
  t.equal(ch.recv(0, 8), 0, 'EOF reads 0');
  t.equal(ch.send(0, 1), -n.EPIPE, 'send to a closed peer: -EPIPE, no SIGPIPE');
  ch.close();
  t.equal(ch.recv(0, 8), -n.EBADF, 'after close: -EBADF');
  t.equal(ch.send(0, 1), -n.EBADF);
  t.throws(() => ch.setBuffers(rbuf, wbuf), { code: 'EBADF' }, 'setBuffers after close throws');
  ch.close();
  t.pass('close twice is harmless');
  n.close(a);
  t.equal(n.fdCount(), before, 'no fd leaked');
});

t.test('fds arrive in meta; more than meta holds is MSG_CTRUNC', async (t) => {
  const before = n.fdCount();
  const [a, b] = n.socketpair();
  const meta = new Int32Array(2 + 1);
  const ch = n.channel(a, meta);
  ch.setBuffers(Buffer.alloc(32), Buffer.alloc(32));
  const e1 = n.eventfd(0);
  const e2 = n.eventfd(0);
  t.equal(n.sendmsg(b, Buffer.from('m1'), 0, 2, [e1]), 2);
  t.equal(ch.recv(0, 32), 2);
  t.equal(meta[0], 1, 'one fd');
  const got = meta[2]!;
  t.not(got, e1, 'a new fd');
  t.equal(n.eventfdWrite(got, 3), 0);
  t.equal(n.eventfdRead(e1), 3, 'the same eventfd');
  n.close(got);

  t.equal(n.sendmsg(b, Buffer.from('m2'), 0, 2, [e1, e2]), 2);
  t.equal(ch.recv(0, 32), 2);
  t.ok(meta[1]! & n.MSG_CTRUNC, 'MSG_CTRUNC when meta has room for fewer');
  for (let i = 0; i < meta[0]!; i++) n.close(meta[2 + i]!);
  ch.close();
  for (const fd of [a, b, e1, e2]) n.close(fd);
  t.equal(n.fdCount(), before, 'no fd leaked, the dropped one included');
});

t.test('bad arguments throw instead of touching memory', async (t) => {
  const [a, b] = n.socketpair();
  t.throws(() => n.channel(-1, new Int32Array(2)), RangeError, 'bad fd');
  t.throws(() => n.channel(a, new Int32Array(1)), RangeError, 'meta too short');
  t.throws(() => n.channel(a, new Uint32Array(4) as unknown as Int32Array), TypeError, 'meta of the wrong type');
  const ch = n.channel(a, new Int32Array(2));
  t.throws(() => ch.setBuffers('x' as unknown as Uint8Array, null), TypeError, 'a string is no buffer');
  t.throws(() => ch.setBuffers(new Uint16Array(4) as unknown as Uint8Array, null), TypeError, 'a Uint16Array is no buffer');
  ch.setBuffers(Buffer.alloc(16), Buffer.alloc(16));
  for (const [off, len] of [[0, 0], [-1, 4], [0, 17], [16, 1], [8, 9], [2 ** 31 - 1, 2]] as const) {
    t.throws(() => ch.recv(off, len), RangeError, `recv(${off}, ${len})`);
    t.throws(() => ch.send(off, len), RangeError, `send(${off}, ${len})`);
  }
  t.throws(() => ch.recv('0' as unknown as number, 4), TypeError, 'offset must be a number');
  t.throws(() => (ch.send as (o?: number) => number)(0), TypeError, 'length is required');
  ch.close();
  n.close(a);
  n.close(b);
});
