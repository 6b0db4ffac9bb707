// listen/connect/accept and plain byte traffic over the addon's sockets.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as n from '../../native/index.js';
import { O_CLOEXEC, O_NONBLOCK, fdFlags, fdTarget, ready, tmpDir } from './util.js';

const enc = (s: string) => Buffer.from(s);

t.test('listen, connect, accept, bytes both ways, EAGAIN, EOF', async (t) => {
  const { dir, cleanup } = tmpDir();
  t.teardown(cleanup);
  const before = n.fdCount();
  const sock = path.join(dir, 's.sock');
  const lfd = n.listenUnix(sock, 8);
  t.equal(n.accept(lfd), -n.EAGAIN, 'accept on an idle listener is -EAGAIN');

  const cfd = n.connectUnix(sock);
  await ready(lfd);
  const sfd = n.accept(lfd);
  t.ok(sfd >= 0, 'accepted');
  for (const fd of [lfd, cfd, sfd]) {
    t.ok(fdTarget(fd).startsWith('socket:'), `fd ${fd} is a socket`);
    t.equal(fdFlags(fd) & (O_CLOEXEC | O_NONBLOCK), O_CLOEXEC | O_NONBLOCK, `fd ${fd} is cloexec+nonblock`);
  }

  const meta = new Int32Array(2 + 4);
  const buf = Buffer.alloc(64);
  t.equal(n.recvmsg(sfd, buf, 0, buf.length, meta), -n.EAGAIN, 'empty socket reads -EAGAIN');
  t.equal(meta[0], 0);

  t.equal(n.sendmsg(cfd, enc('hello'), 0, 5), 5);
  t.equal(n.recvmsg(sfd, buf, 0, buf.length, meta), 5);
  t.equal(buf.subarray(0, 5).toString(), 'hello');
  t.same([meta[0], meta[1]], [0, 0], 'no fds, no flags');

  // offset/length on both sides
  const src = enc('xxREPLYyy');
  t.equal(n.sendmsg(sfd, src, 2, 5), 5);
  buf.fill(0);
  t.equal(n.recvmsg(cfd, buf, 10, 20, meta), 5);
  t.equal(buf.subarray(10, 15).toString(), 'REPLY');
  t.equal(buf[9], 0, 'nothing written before offset');
  t.equal(buf[15], 0, 'nothing written after the data');

  // a short read leaves the rest queued
  t.equal(n.sendmsg(cfd, enc('0123456789'), 0, 10), 10);
  t.equal(n.recvmsg(sfd, buf, 0, 4, meta), 4);
  t.equal(buf.subarray(0, 4).toString(), '0123');
  t.equal(n.recvmsg(sfd, buf, 0, 64, meta), 6);
  t.equal(buf.subarray(0, 6).toString(), '456789');

  t.equal(n.close(cfd), 0);
  t.equal(n.recvmsg(sfd, buf, 0, 64, meta), 0, 'EOF reads 0');
  t.equal(n.recvmsg(sfd, buf, 0, 64, meta), 0, 'and keeps reading 0');
  t.equal(n.sendmsg(sfd, enc('x'), 0, 1), -n.EPIPE, 'send to a closed peer is -EPIPE, no SIGPIPE');
  t.equal(n.close(sfd), 0);
  t.equal(n.close(lfd), 0);
  t.equal(n.close(lfd), -n.EBADF, 'closing twice is -EBADF');
  t.equal(n.fdCount(), before, 'no fd leaked');
});

t.test('many clients queue on the backlog and are accepted in turn', async (t) => {
  const { dir, cleanup } = tmpDir();
  t.teardown(cleanup);
  const sock = path.join(dir, 'b.sock');
  const lfd = n.listenUnix(sock, 16);
  const clients = Array.from({ length: 5 }, () => n.connectUnix(sock));
  const servers: number[] = [];
  for (let fd; (fd = n.accept(lfd)) >= 0; ) servers.push(fd);
  t.equal(servers.length, 5);
  clients.forEach((c, i) => t.equal(n.sendmsg(c, Buffer.from([i]), 0, 1), 1));
  const b = new Uint8Array(1);
  const meta = new Int32Array(2);
  t.same(servers.map((s) => (n.recvmsg(s, b, 0, 1, meta), b[0])), [0, 1, 2, 3, 4], 'accepted in order');
  [...clients, ...servers, lfd].forEach((fd) => n.close(fd));
});

t.test('setup errors carry code, errno and syscall', async (t) => {
  const { dir, cleanup } = tmpDir();
  t.teardown(cleanup);
  const sock = path.join(dir, 'e.sock');
  const lfd = n.listenUnix(sock, 1);
  t.throws(() => n.listenUnix(sock, 1), { code: 'EADDRINUSE', errno: n.EADDRINUSE, syscall: 'bind', path: sock });
  t.throws(() => n.connectUnix(path.join(dir, 'missing.sock')), { code: 'ENOENT', errno: n.ENOENT, syscall: 'connect' });
  n.close(lfd);
  t.throws(() => n.connectUnix(sock), { code: 'ECONNREFUSED' }, 'stale socket file: refused');
  const long = path.join(dir, 'x'.repeat(120));
  t.throws(() => n.listenUnix(long, 1), { code: 'ENAMETOOLONG' });
  t.throws(() => n.connectUnix(long), { code: 'ENAMETOOLONG' });
  const file = path.join(dir, 'plain');
  writeFileSync(file, '');
  t.throws(() => n.connectUnix(file), { code: 'ECONNREFUSED' }, 'not a socket');
  const e = t.throws(() => n.listenUnix('/proc/nope/x.sock', 1)) as Error;
  t.match(e.message, /^bind ENOENT: .*\/proc\/nope\/x\.sock$/, 'message names call, code and path');
  t.equal(n.systemErrnoName(n.EAGAIN), 'EAGAIN');
  t.equal(n.systemErrnoName(-n.EPIPE), 'EPIPE');
});

t.test('socketpair: connected, non-blocking, cloexec; accept/recv on wrong fds give -errno', async (t) => {
  const [a, b] = n.socketpair();
  for (const fd of [a, b]) t.equal(fdFlags(fd) & (O_CLOEXEC | O_NONBLOCK), O_CLOEXEC | O_NONBLOCK);
  t.equal(n.sendmsg(a, Buffer.from('ab'), 0, 2), 2);
  const buf = Buffer.alloc(2);
  t.equal(n.recvmsg(b, buf, 0, 2, new Int32Array(2)), 2);
  t.equal(n.accept(a), -n.EINVAL, 'accept on a non-listening socket');
  const efd = n.eventfd(0);
  t.equal(n.recvmsg(efd, buf, 0, 2, new Int32Array(2)), -n.ENOTSOCK);
  t.equal(n.sendmsg(efd, buf, 0, 2), -n.ENOTSOCK);
  t.equal(n.recvmsg(999_999, buf, 0, 2, new Int32Array(2)), -n.EBADF);
  [a, b, efd].forEach((fd) => n.close(fd));
});

t.test('a large send is partial when the socket buffer fills, then -EAGAIN', async (t) => {
  const [a, b] = n.socketpair();
  const big = Buffer.alloc(4 << 20, 7);
  let sent = 0;
  let r: number;
  while ((r = n.sendmsg(a, big, 0, big.length)) > 0) sent += r;
  t.equal(r, -n.EAGAIN, 'full socket reports -EAGAIN, never blocks');
  t.ok(sent > 0 && sent < big.length, `sent ${sent} bytes before it filled`);
  const meta = new Int32Array(2);
  let got = 0;
  while ((r = n.recvmsg(b, big, 0, big.length, meta)) > 0) got += r;
  t.equal(got, sent, 'everything sent arrives');
  n.close(a);
  n.close(b);
});
