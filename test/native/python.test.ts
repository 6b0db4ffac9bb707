// SCM_RIGHTS against a foreign implementation: Python's socket.send_fds/recv_fds.
import t from 'tap';
import { spawn } from 'node:child_process';
import { fstatSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import * as n from '../../native/index.js';
import { ready, repoRoot, tmpDir } from './util.js';

t.test('fds both ways with a Python peer', async (t) => {
  const { dir, cleanup } = tmpDir();
  t.teardown(cleanup);
  const before = n.fdCount();
  const sock = path.join(dir, 'py.sock');
  const lfd = n.listenUnix(sock, 1);
  // .py files are not copied into dist: use the source tree's copy
  const py = spawn('python3', [path.join(repoRoot(), 'test', 'native', 'peer.py'), sock], {
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  let stderr = '';
  py.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => py.on('exit', (code) => resolve(code)));

  await ready(lfd, n.READABLE, 15_000);
  const fd = n.accept(lfd);
  t.ok(fd >= 0, 'python connected');

  const mfd = n.memfdCreate('to-python', 64);
  writeSync(mfd, Buffer.from('hello'), 0, 5, 0);
  t.equal(n.sendmsg(fd, Buffer.from('memfd'), 0, 5, [mfd]), 5);

  const buf = Buffer.alloc(64);
  const meta = new Int32Array(2 + 2);
  const reads: { text: string; fds: number[]; flags: number }[] = [];
  for (;;) {
    const r = n.recvmsg(fd, buf, 0, buf.length, meta);
    if (r === -n.EAGAIN) {
      await ready(fd, n.READABLE, 15_000);
      continue;
    }
    t.ok(r >= 0, `recvmsg ${r}`);
    if (r <= 0) break;
    reads.push({ text: buf.subarray(0, r).toString(), fds: Array.from(meta.subarray(2, 2 + meta[0]!)), flags: meta[1]! });
  }
  t.equal(await exited, 0, `python exited cleanly ${stderr}`);

  t.same(reads.map((r) => r.text), ['pyfdhello', 'many'], 'each message with fds comes in its own read');
  const [first, second] = reads;
  t.equal(first!.flags, 0);
  t.equal(first!.fds.length, 2, 'two fds from python');
  const [pyMem, pyEvent] = first!.fds;
  const b = Buffer.alloc(11);
  t.equal(readSync(pyMem!, b, 0, 11, 0), 11);
  t.equal(b.toString(), 'from python', 'python\'s memfd content');
  t.equal(n.eventfdRead(pyEvent!), 9, 'python\'s eventfd counter');
  t.equal(fstatSync(pyMem!).nlink, 0, 'a memfd (unlinked)');
  const w = Buffer.alloc(10);
  readSync(mfd, w, 0, 10, 0);
  t.equal(w.toString(), 'helloWORLD', 'python wrote into our memfd');

  t.ok(second!.flags & n.MSG_CTRUNC, '4 fds into room for 2: MSG_CTRUNC');
  t.equal(second!.fds.length, 2);
  for (const r of reads) for (const f of r.fds) n.close(f);
  [fd, lfd, mfd].forEach((f) => n.close(f));
  t.equal(n.fdCount(), before, 'no fd leaked');
});
