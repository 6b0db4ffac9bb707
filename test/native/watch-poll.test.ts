// watchPoll: after a callback the watcher looks at its fd for a while; what
// arrives meanwhile comes as POLL_HIT, a window that runs out is reported as
// POLL_MISS (or POLL_CONTENDED when another thread took the CPU) with the
// next callback, and the window gives way to other work of the event loop.
// Each case runs in a fresh node, whose event loop has nothing else to do
// (the test runner's own timers and immediates would end windows early).
import t from 'tap';
import * as n from '../../native/index.js';
import { child } from './util.js';

interface Call { events: number; ns: number }

/**
 * A socketpair watched on `b` with a window of `windowNs`; the child sends
 * one message, then another `gapMs` later. `onCall` (JS source) runs in each
 * callback after the data was read, with `calls` (so far) and `send()`.
 * Returns the callbacks' events and ns, and what `extra` printed.
 */
function scenario(windowNs: number, onCall: string, gapMs = 20): { calls: Call[]; extra: unknown } {
  const r = child(`
    const [a, b] = n.socketpair();
    const buf = Buffer.alloc(64), meta = new Int32Array(2);
    const calls = [];
    const out = { extra: null };
    const send = () => n.sendmsg(a, Buffer.from('x'), 0, 1);
    const w = n.watch(b, n.READABLE, (status, events, ns) => {
      calls.push({ events, ns });
      while (n.recvmsg(b, buf, 0, buf.length, meta) > 0);
      ${onCall}
    });
    n.watchPoll(w, ${windowNs});
    send();
    setTimeout(() => {
      send();
      setTimeout(() => {
        n.watchClose(w);
        console.log(JSON.stringify({ calls, extra: out.extra }));
        process.exit(0);
      }, 20);
    }, ${gapMs});
  `);
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as { calls: Call[]; extra: unknown };
}

const WINDOW = n.POLL_HIT | n.POLL_MISS | n.POLL_CONTENDED;

t.test('data that arrives in the window is a POLL_HIT, without epoll', async (t) => {
  // The first callback sends the next message itself: the window after it finds it.
  const { calls } = scenario(500_000, 'if (calls.length === 1) send();');
  t.equal(calls.length, 3, 'three callbacks');
  t.equal(calls[0]!.events & WINDOW, 0, 'the first came from epoll, after no window');
  t.equal(calls[0]!.ns, -1, 'the first callback has no previous one');
  t.equal(calls[1]!.events, n.READABLE | n.POLL_HIT, 'the second was caught by the window');
  t.ok(calls[1]!.ns >= 0 && calls[1]!.ns < 500_000, `spun ${calls[1]!.ns} ns, within the window`);
});

t.test('a window that runs out is reported with the next callback', async (t) => {
  const { calls } = scenario(200_000, '');
  t.equal(calls.length, 2);
  const next = calls[1]!;
  t.not(next.events & (n.POLL_MISS | n.POLL_CONTENDED), 0, 'the window ran out (or lost the CPU) before the second message');
  t.equal(next.events & n.POLL_HIT, 0, 'not a hit');
  t.ok(next.ns > 5_000_000, `ns since the window ended: about the 20 ms gap (${next.ns})`);
});

t.test('window 0 never spins', async (t) => {
  const { calls } = scenario(0, 'if (calls.length === 1) send();');
  t.equal(calls.length, 3);
  t.equal(calls[1]!.events & WINDOW, 0, 'the second message came through epoll');
  t.equal(calls[2]!.events & WINDOW, 0);
});

t.test('the window gives way to a pending immediate', async (t) => {
  const { calls, extra } = scenario(500_000, `
    if (calls.length === 1) { send(); setImmediate(() => { out.extra = calls.length; }); }
  `);
  t.equal(calls.length, 3);
  t.equal(calls[1]!.events & WINDOW, 0, 'no window while an immediate was pending: the message came through epoll');
  t.equal(extra, 1, 'the immediate ran before the second callback');
});

t.test('the window gives way to another fd of the loop', async (t) => {
  const { calls, extra } = scenario(900_000, `
    if (!globalThis.efd) {
      globalThis.efd = n.eventfd(0);
      globalThis.we = n.watch(efd, n.READABLE, () => { out.extra = calls.length; n.eventfdRead(efd); n.watchClose(we); });
    }
    if (calls.length === 1) n.eventfdWrite(efd, 1);
  `);
  t.equal(calls.length, 2);
  t.equal(extra, 1, 'the eventfd was served after the first callback');
  t.equal(calls[1]!.events & WINDOW, 0, 'the window ended for it: neither a hit nor a miss');
});

t.test('a window that loses the CPU to another thread ends as POLL_CONTENDED', async (t) => {
  // This process and a busy one share CPU 0: the window yields every round,
  // the busy process takes the CPU, and the window stops when it gets it back.
  const r = child(`
    import('node:child_process').then(({ spawn, execFileSync }) => {
      execFileSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
      const hog = spawn('taskset', ['-c', '0', process.execPath, '-e', 'for (;;) {}'], { stdio: 'ignore' });
      const [a, b] = n.socketpair();
      const buf = Buffer.alloc(64), meta = new Int32Array(2);
      const calls = [];
      const w = n.watch(b, n.READABLE, (status, events, ns) => {
        calls.push({ events, ns });
        while (n.recvmsg(b, buf, 0, buf.length, meta) > 0);
      });
      n.watchPoll(w, ${n.POLL_MAX_NS});
      const send = () => n.sendmsg(a, Buffer.from('x'), 0, 1);
      setTimeout(() => {
        send();
        setTimeout(() => {
          send();
          setTimeout(() => {
            hog.kill('SIGKILL');
            n.watchClose(w);
            console.log(JSON.stringify(calls));
            process.exit(0);
          }, 20);
        }, 50);
      }, 100);
    });
  `);
  t.equal(r.status, 0, r.stderr);
  const calls = JSON.parse(r.stdout) as Call[];
  t.equal(calls.length, 2);
  t.equal(calls[1]!.events & WINDOW, n.POLL_CONTENDED, 'the window after the first message lost the CPU');
});

t.test('watchPoll checks its arguments', async (t) => {
  const [a, b] = n.socketpair();
  const w = n.watch(b, n.READABLE, () => {});
  t.throws(() => n.watchPoll(w, -1), RangeError);
  t.throws(() => n.watchPoll(w, n.POLL_MAX_NS + 1), RangeError);
  t.throws(() => n.watchPoll(w, 1.5), RangeError);
  t.throws(() => n.watchPoll({ fd: b }, 1000), TypeError, 'a look-alike object is not a Watcher');
  t.doesNotThrow(() => n.watchPoll(w, n.POLL_MAX_NS));
  n.watchClose(w);
  t.throws(() => n.watchPoll(w, 1000), { code: 'EBADF' }, 'after watchClose');
  n.close(a);
  n.close(b);
});

t.test('yieldCpu: false while nothing else wants the CPU, true when a busy thread there held it longer than the bound', async (t) => {
  // First unpinned (on a quiet CPU a yield returns at once), then pinned to
  // CPU 0 with a busy process: a yield hands it the CPU for a time slice.
  const r = child(`
    import('node:child_process').then(({ spawn, execFileSync }) => {
      let alone = false;
      for (let i = 0; i < 1000 && !alone; i++) alone = !n.yieldCpu(${n.POLL_MAX_NS});
      execFileSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
      const hog = spawn('taskset', ['-c', '0', process.execPath, '-e', 'for (;;) {}'], { stdio: 'ignore' });
      setTimeout(() => {
        let lost = false;
        for (let i = 0; i < 1000 && !lost; i++) lost = n.yieldCpu(0);
        hog.kill('SIGKILL');
        console.log(JSON.stringify({ alone, lost }));
        process.exit(0);
      }, 100);
    });
  `);
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { alone: true, lost: true });
});

t.test('yieldCpu checks its bound', async (t) => {
  t.throws(() => n.yieldCpu(-1), RangeError);
  t.throws(() => n.yieldCpu(n.POLL_MAX_NS + 1), RangeError);
  t.throws(() => n.yieldCpu(0.5), RangeError);
  t.type(n.yieldCpu(n.POLL_MAX_NS), 'boolean');
});
