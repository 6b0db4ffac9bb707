// SCM_RIGHTS: fds both ways, which read carries them, truncation, no leaks.
import t from 'tap';
import { fstatSync, readSync, writeSync } from 'node:fs';
import * as n from '../../native/index.js';
import { O_CLOEXEC, fdFlags } from './util.js';

const text = (s: string) => Buffer.from(s);

function memfdWith(content: string): number {
  const fd = n.memfdCreate('fds-test', 0);
  writeSync(fd, text(content), 0, content.length, 0);
  return fd;
}

function readAt(fd: number, len: number, pos = 0): string {
  const b = Buffer.alloc(len);
  return b.subarray(0, readSync(fd, b, 0, len, pos)).toString();
}

t.test('a memfd sent with bytes arrives as the same file', async (t) => {
  const before = n.fdCount();
  const [a, b] = n.socketpair();
  const mfd = memfdWith('from the sender');
  t.equal(n.sendmsg(a, text('MSG1'), 0, 4, [mfd]), 4);
  const meta = new Int32Array(2 + 8);
  const buf = Buffer.alloc(16);
  t.equal(n.recvmsg(b, buf, 0, 16, meta), 4);
  t.equal(buf.subarray(0, 4).toString(), 'MSG1');
  t.equal(meta[0], 1, 'one fd');
  t.equal(meta[1], 0, 'no flags (MSG_CMSG_CLOEXEC is not echoed)');
  const got = meta[2]!;
  t.not(got, mfd, 'a new fd number');
  t.equal(fstatSync(got).ino, fstatSync(mfd).ino, 'same inode');
  t.equal(fdFlags(got) & O_CLOEXEC, O_CLOEXEC, 'received fd is close-on-exec');
  t.equal(readAt(got, 64), 'from the sender', 'reads what the sender wrote');
  writeSync(got, text('RECEIVER'), 0, 8, 0);
  t.equal(readAt(mfd, 8), 'RECEIVER', 'sender sees what the receiver wrote');

  // and the other way, with an Int32Array of fds
  const efd = n.eventfd(0);
  t.equal(n.sendmsg(b, text('back'), 0, 4, Int32Array.of(got, efd)), 4);
  t.equal(n.recvmsg(a, buf, 0, 16, meta), 4);
  t.equal(meta[0], 2, 'two fds, in order');
  t.equal(fstatSync(meta[2]!).ino, fstatSync(mfd).ino);
  t.equal(n.eventfdWrite(efd, 5), 0);
  t.equal(n.eventfdRead(meta[3]!), 5, 'second fd is the eventfd');
  [a, b, mfd, got, efd, meta[2]!, meta[3]!].forEach((fd) => t.equal(n.close(fd), 0));
  t.equal(n.fdCount(), before, 'no fd leaked');
});

t.test('fds arrive with the read holding the first byte of their message', async (t) => {
  const [a, b] = n.socketpair();
  const meta = new Int32Array(2 + 4);
  const buf = Buffer.alloc(64);
  const mfd = memfdWith('B');

  // A (no fd) then B (fd); 4-byte reads: only B's first read carries it.
  t.equal(n.sendmsg(a, text('AAAAAAAA'), 0, 8), 8);
  t.equal(n.sendmsg(a, text('BBBBBBBB'), 0, 8, [mfd]), 8);
  const reads: [string, number][] = [];
  for (let r; (r = n.recvmsg(b, buf, 0, 4, meta)) > 0; ) {
    reads.push([buf.subarray(0, r).toString(), meta[0]!]);
    for (let i = 0; i < meta[0]!; i++) n.close(meta[2 + i]!);
  }
  t.same(reads, [['AAAA', 0], ['AAAA', 0], ['BBBB', 1], ['BBBB', 0]], 'small reads');

  // A 6-byte read straddles A's tail and B's head: it gets B's fd.
  t.equal(n.sendmsg(a, text('AAAAAAAA'), 0, 8), 8);
  t.equal(n.sendmsg(a, text('BBBBBBBB'), 0, 8, [mfd]), 8);
  t.equal(n.recvmsg(b, buf, 0, 6, meta), 6);
  t.same([buf.subarray(0, 6).toString(), meta[0]], ['AAAAAA', 0]);
  t.equal(n.recvmsg(b, buf, 0, 6, meta), 6);
  t.same([buf.subarray(0, 6).toString(), meta[0]], ['AABBBB', 1], 'tail of A + head of B, with B\'s fd');
  n.close(meta[2]!);
  t.equal(n.recvmsg(b, buf, 0, 64, meta), 4);
  t.equal(meta[0], 0);

  // A big read takes A's tail and B, but stops after a message with fds.
  const m2 = memfdWith('C');
  t.equal(n.sendmsg(a, text('AAAA'), 0, 4), 4);
  t.equal(n.sendmsg(a, text('BBBB'), 0, 4, [mfd]), 4);
  t.equal(n.sendmsg(a, text('CCCC'), 0, 4, [m2]), 4);
  t.equal(n.recvmsg(b, buf, 0, 64, meta), 8);
  t.same([buf.subarray(0, 8).toString(), meta[0]], ['AAAABBBB', 1]);
  t.equal(fstatSync(meta[2]!).ino, fstatSync(mfd).ino, 'B\'s fd');
  n.close(meta[2]!);
  t.equal(n.recvmsg(b, buf, 0, 64, meta), 4);
  t.same([buf.subarray(0, 4).toString(), meta[0]], ['CCCC', 1]);
  t.equal(fstatSync(meta[2]!).ino, fstatSync(m2).ino, 'C\'s fd');
  [meta[2]!, a, b, mfd, m2].forEach((fd) => n.close(fd));
});

t.test('MSG_CTRUNC when more fds arrive than meta holds, and nothing leaks', async (t) => {
  const before = n.fdCount();
  const [a, b] = n.socketpair();
  const fds = [0, 1, 2, 3].map((i) => memfdWith(`f${i}`));
  const buf = Buffer.alloc(8);

  for (const [sendN, cap] of [[4, 2], [2, 1], [3, 1], [1, 0], [4, 0]] as const) {
    const meta = new Int32Array(2 + cap);
    t.equal(n.sendmsg(a, text('x'), 0, 1, fds.slice(0, sendN)), 1);
    t.equal(n.recvmsg(b, buf, 0, 8, meta), 1, 'the bytes still arrive');
    t.ok(meta[1]! & n.MSG_CTRUNC, `${sendN} fds into room for ${cap}: MSG_CTRUNC`);
    t.equal(meta[0], cap, `the first ${cap} are delivered`);
    for (let i = 0; i < meta[0]!; i++) {
      t.equal(readAt(meta[2 + i]!, 2), `f${i}`, `fd ${i} is the sender's fd ${i}`);
      n.close(meta[2 + i]!);
    }
  }
  [a, b, ...fds].forEach((fd) => n.close(fd));
  t.equal(n.fdCount(), before, 'no fd leaked');
});

t.test('fds on EAGAIN/EOF/errors: none reported', async (t) => {
  const [a, b] = n.socketpair();
  const meta = Int32Array.of(7, 7, 7, 7);
  t.equal(n.recvmsg(b, Buffer.alloc(4), 0, 4, meta), -n.EAGAIN);
  t.same([meta[0], meta[1]], [0, 0], 'meta reset on -EAGAIN');
  const mfd = memfdWith('z');
  t.equal(n.sendmsg(a, text('z'), 0, 1, [999_999]), -n.EBADF, 'a bad fd fails the send');
  t.equal(n.sendmsg(a, text('z'), 0, 1, []), 1, 'empty fd list is fine');
  t.equal(n.sendmsg(a, text('z'), 0, 1, null), 1, 'null fd list is fine');
  n.close(a);
  const buf = Buffer.alloc(4);
  t.equal(n.recvmsg(b, buf, 0, 4, meta), 2);
  t.equal(meta[0], 0);
  t.equal(n.recvmsg(b, buf, 0, 4, meta), 0, 'EOF');
  t.same([meta[0], meta[1]], [0, 0]);
  n.close(b);
  n.close(mfd);
});

t.test('MAX_FDS fds in one message', async (t) => {
  const before = n.fdCount();
  const [a, b] = n.socketpair();
  const mfd = memfdWith('m');
  t.equal(n.MAX_FDS, 253);
  const all = new Array<number>(n.MAX_FDS).fill(mfd);
  t.equal(n.sendmsg(a, text('y'), 0, 1, all), 1);
  const meta = new Int32Array(2 + 300);
  t.equal(n.recvmsg(b, Buffer.alloc(1), 0, 1, meta), 1);
  t.equal(meta[0], n.MAX_FDS);
  t.equal(meta[1], 0);
  const inos = new Set<number>();
  for (let i = 0; i < meta[0]!; i++) {
    inos.add(fstatSync(meta[2 + i]!).ino);
    n.close(meta[2 + i]!);
  }
  t.same([...inos], [fstatSync(mfd).ino]);
  t.throws(() => n.sendmsg(a, text('y'), 0, 1, [...all, mfd]), RangeError, 'one more is refused');
  [a, b, mfd].forEach((fd) => n.close(fd));
  t.equal(n.fdCount(), before);
});

t.test('no fd leak across 200 send/recv-with-fd cycles', async (t) => {
  const [a, b] = n.socketpair();
  const mfd = memfdWith('cycle');
  const before = n.fdCount();
  const meta = new Int32Array(2 + 2);
  const buf = Buffer.alloc(16);
  let ok = 0;
  for (let i = 0; i < 200; i++) {
    const [from, to] = i % 2 ? [a, b] : [b, a];
    if (n.sendmsg(from, text(`m${i}`), 0, 2, i % 3 ? [mfd] : [mfd, mfd]) !== 2) continue;
    if (n.recvmsg(to, buf, 0, 16, meta) !== 2) continue;
    if (meta[0] === (i % 3 ? 1 : 2) && meta[1] === 0) ok++;
    for (let k = 0; k < meta[0]!; k++) n.close(meta[2 + k]!);
  }
  t.equal(ok, 200, 'every cycle moved its fds');
  t.equal(n.fdCount(), before, 'fd count unchanged');
  [a, b, mfd].forEach((fd) => n.close(fd));
});
