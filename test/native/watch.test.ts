// libuv readiness on raw fds: fire, change, stop, close, errors.
import t from 'tap';
import { openSync, closeSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as n from '../../native/index.js';
import { child, ready, repoRoot, tick, tmpDir } from './util.js';

t.test('READABLE fires on a socket with data, and stops after watchClose', async (t) => {
  const [a, b] = n.socketpair();
  const seen: [number, number][] = [];
  const buf = Buffer.alloc(16);
  const meta = new Int32Array(2);
  let got = '';
  const w = n.watch(b, n.READABLE, (status, events) => {
    seen.push([status, events]);
    const r = n.recvmsg(b, buf, 0, 16, meta);
    if (r > 0) got += buf.subarray(0, r).toString();
  });
  t.equal(w.fd, b);
  t.throws(() => {
    (w as { fd: number }).fd = 7;
  }, TypeError, 'fd is read-only');
  await tick();
  t.equal(seen.length, 0, 'no data, no callback');
  n.sendmsg(a, Buffer.from('ping'), 0, 4);
  await tick();
  t.same(seen, [[0, n.READABLE]], 'one READABLE callback');
  t.equal(got, 'ping');
  n.watchClose(w);
  n.sendmsg(a, Buffer.from('more'), 0, 4);
  await tick();
  t.equal(seen.length, 1, 'no callback after watchClose');
  t.doesNotThrow(() => n.watchClose(w), 'watchClose is idempotent');
  t.throws(() => n.watchSet(w, n.READABLE), { code: 'EBADF' }, 'watchSet after close');
  t.equal(n.recvmsg(b, buf, 0, 16, meta), 4, 'the fd itself stays open');
  n.close(a);
  n.close(b);
});

t.test('WRITABLE, event mask changes, events = 0', async (t) => {
  const [a, b] = n.socketpair();
  let calls = 0;
  let last = 0;
  const w = n.watch(a, 0, (_s, ev) => {
    calls++;
    last = ev;
    n.watchSet(w, 0); // one shot
  });
  await tick();
  t.equal(calls, 0, 'events 0: created but not polling');
  n.watchSet(w, n.WRITABLE);
  await tick();
  t.equal(calls, 1, 'an empty socket is writable');
  t.equal(last, n.WRITABLE);
  n.watchSet(w, n.READABLE | n.WRITABLE);
  await tick();
  t.equal(calls, 2);
  t.equal(last, n.WRITABLE, 'nothing to read yet');
  n.sendmsg(b, Buffer.from('x'), 0, 1);
  n.watchSet(w, n.READABLE);
  await tick();
  t.equal(calls, 3);
  t.equal(last, n.READABLE);
  n.watchClose(w);
  t.throws(() => n.watchSet(w, 4), RangeError);
  n.close(a);
  n.close(b);
});

t.test('a listening socket turns READABLE when a client connects', async (t) => {
  const { dir, cleanup } = tmpDir();
  t.teardown(cleanup);
  const sock = path.join(dir, 'w.sock');
  const lfd = n.listenUnix(sock, 4);
  const accepted = new Promise<number>((resolve) => {
    const w = n.watch(lfd, n.READABLE, () => {
      n.watchClose(w);
      resolve(n.accept(lfd));
    });
  });
  const c = n.connectUnix(sock);
  const s = await accepted;
  t.ok(s >= 0, 'accepted from the callback');
  t.equal(await ready(c, n.WRITABLE), n.WRITABLE);
  n.close(c);
  t.equal(await ready(s), n.READABLE, 'peer close reads as READABLE (EOF)');
  t.equal(n.recvmsg(s, Buffer.alloc(1), 0, 1, new Int32Array(2)), 0);
  [s, lfd].forEach((fd) => n.close(fd));
});

t.test('eventfd becomes READABLE after a write', async (t) => {
  const fd = n.eventfd(0);
  const p = ready(fd);
  n.eventfdWrite(fd, 2);
  t.equal(await p, n.READABLE);
  t.equal(n.eventfdRead(fd), 2);
  n.close(fd);
});

t.test('one watcher per fd; bad fds and arguments are refused', async (t) => {
  const [a, b] = n.socketpair();
  const w = n.watch(a, n.READABLE, () => {});
  t.throws(() => n.watch(a, n.READABLE, () => {}), { code: 'EEXIST' });
  n.watchSet(w, 0);
  t.throws(() => n.watch(a, n.READABLE, () => {}), { code: 'EEXIST' }, 'a stopped watcher still owns the fd');
  n.watchClose(w);
  const w2 = n.watch(a, n.READABLE, () => {});
  t.pass('after watchClose the fd can be watched again');
  n.watchClose(w2);

  t.throws(() => n.watch(999_999, n.READABLE, () => {}), { code: 'EBADF' });
  const file = openSync(process.execPath, 'r');
  t.throws(() => n.watch(file, n.READABLE, () => {}), { code: 'EPERM' }, 'regular files cannot be polled');
  closeSync(file);
  t.throws(() => n.watch(a, n.READABLE, 'cb' as unknown as () => void), TypeError);
  t.throws(() => n.watch(a, 8, () => {}), RangeError);
  t.throws(() => n.watchSet({ fd: a }, n.READABLE), TypeError, 'a look-alike object is not a Watcher');
  t.throws(() => n.watchClose(null as unknown as n.Watcher), TypeError);
  t.throws(() => n.watchClose(n.mmap as unknown as n.Watcher), TypeError);
  n.close(a);
  n.close(b);
});

t.test('many watchers opened and closed do not leak fds or keep the loop alive', async (t) => {
  const before = n.fdCount();
  for (let i = 0; i < 100; i++) {
    const [a, b] = n.socketpair();
    const p = ready(b);
    n.sendmsg(a, Buffer.from('x'), 0, 1);
    await p;
    n.close(a);
    n.close(b);
  }
  t.equal(n.fdCount(), before);
});

// Behaviour that involves process exit or uncaught exceptions runs in a child.
t.test('an exception in a callback reaches uncaughtException', async (t) => {
  const r = child(`
    process.on('uncaughtException', (e) => { console.log('caught', e.message); n.watchClose(w); });
    const [a, b] = n.socketpair();
    const w = n.watch(b, n.READABLE, () => { throw new Error('boom'); });
    n.sendmsg(a, Buffer.from('x'), 0, 1);
  `);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), 'caught boom');
});

t.test('an open watcher keeps the process alive until closed', async (t) => {
  const r = child(`
    const [a, b] = n.socketpair();
    const w = n.watch(b, n.READABLE, () => { console.log('fired'); n.watchClose(w); });
    setTimeout(() => n.sendmsg(a, Buffer.from('x'), 0, 1), 200);
  `);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), 'fired', 'the process waited for the callback, then exited');
});

t.test('exiting with watchers and mappings still open is clean', async (t) => {
  const r = child(`
    const [a, b] = n.socketpair();
    n.watch(a, n.WRITABLE, () => {});
    n.watch(b, 0, () => {});
    const fd = n.memfdCreate('exit', 4096);
    new Uint8Array(n.mmap(fd, 0, 4096, 3))[0] = 1;
    setTimeout(() => { console.log('exiting'); process.exit(0); }, 50);
  `);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), 'exiting');
});

t.test('worker threads can exit with watchers and mappings open', async (t) => {
  // The addon is unloaded when a worker ends: every uv close callback must
  // have run by then, or it runs in unloaded code (SIGSEGV).
  const url = pathToFileURL(path.join(repoRoot(), 'dist', 'native', 'index.js')).href;
  const src = `import * as n from ${JSON.stringify(url)};
    const [a, b] = n.socketpair(); n.watch(a, n.WRITABLE, () => {}); n.watch(b, 0, () => {});
    const [c, d] = n.socketpair(); n.watchClose(n.watch(c, n.READABLE, () => {}));
    const fd = n.memfdCreate('wk', 4096);
    new Uint8Array(n.mmap(fd, 0, 4096, 3))[0] = 1;
    n.munmap(n.mmap(fd, 0, 4096, 3));
    console.log('worker ran');
    setTimeout(() => process.exit(0), 50);`;
  const r = child(`
    import { Worker } from 'node:worker_threads';
    for (let i = 0; i < 3; i++) {
      const w = new Worker(new URL('data:text/javascript,' + encodeURIComponent(${JSON.stringify(src)})));
      w.on('exit', (code) => console.log('worker exit', code));
    }
  `);
  t.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').sort();
  t.same(lines, [...Array(3).fill('worker exit 0'), ...Array(3).fill('worker ran')]);
});
