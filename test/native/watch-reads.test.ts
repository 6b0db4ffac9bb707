// watchReads at the addon level: which requests the watcher answers itself
// (a lone, well-formed REGION_READ inside a range, with the gate open) and
// which it leaves on the socket for JS, and how it checks its arguments.
import t, { type Test } from 'tap';
import * as n from '../../native/index.js';
import { VFIO_USER_F_NO_REPLY, VFIO_USER_F_TYPE_REPLY } from '../../protocol/constants.js';

const REGION = 7;
const BYTES = Buffer.from(Array.from({ length: 64 }, (_, i) => i * 3));

/** A REGION_READ as a client sends it; `patch` overrides header fields. */
function request(offset: number, count: number, patch: { command?: number; size?: number; flags?: number; region?: number } = {}): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt16LE(0x1234, 0);
  b.writeUInt16LE(patch.command ?? 9, 2);
  b.writeUInt32LE(patch.size ?? 32, 4);
  b.writeUInt32LE(patch.flags ?? 0, 8);
  b.writeBigUInt64LE(BigInt(offset), 16);
  b.writeUInt32LE(patch.region ?? REGION, 24);
  b.writeUInt32LE(count, 28);
  return b;
}

interface Rig {
  client: number;
  shared: Int32Array;
  /** The next callback's events and what JS then found to read on the server's end. */
  next(): Promise<{ events: number; left: number; fds: number }>;
}

function rig(t: Test, gate = 64): Rig {
  const [client, server] = n.socketpair();
  const shared = new Int32Array(n.READS_SHARED_FIELDS);
  shared[n.READS_GATE] = gate;
  const out = Buffer.alloc(32 + 64);
  const buf = Buffer.alloc(4096);
  const meta = new Int32Array(2 + 4);
  let waiting: ((v: { events: number; left: number; fds: number }) => void) | null = null;
  const w = n.watch(server, n.READABLE, (_status, events) => {
    let left = 0;
    let fds = 0;
    for (let r = n.recvmsg(server, buf, 0, buf.length, meta); r > 0; r = n.recvmsg(server, buf, 0, buf.length, meta)) {
      left += r;
      for (let i = 0; i < meta[0]!; i++) { fds++; n.close(meta[2 + i]!); }
    }
    waiting?.({ events, left, fds });
    waiting = null;
  });
  n.watchReads(w, shared, out, [{ region: REGION, offset: 8, bytes: BYTES.subarray(8, 40) }]);
  t.teardown(() => { n.watchClose(w); n.close(client); n.close(server); });
  return { client, shared, next: () => new Promise((resolve) => { waiting = resolve; }) };
}

/** The reply on the client's end, if any. */
function reply(fd: number): Buffer | null {
  const buf = Buffer.alloc(4096);
  const r = n.recvmsg(fd, buf, 0, buf.length, new Int32Array(2));
  return r > 0 ? buf.subarray(0, r) : null;
}

t.test('a lone read inside the range is answered, and JS is told', async (t) => {
  const r = rig(t);
  const p = r.next();
  n.sendmsg(r.client, request(12, 4), 0, 32);
  const { events, left } = await p;
  t.ok(events & n.POLL_READ_SERVED, 'POLL_READ_SERVED');
  t.notOk(events & n.POLL_READ_UNSENT, 'all of the reply went out');
  t.equal(left, 0, 'nothing left for JS to read');
  const got = reply(r.client)!;
  const want = Buffer.alloc(36);
  want.writeUInt16LE(0x1234, 0);
  want.writeUInt16LE(9, 2);
  want.writeUInt32LE(36, 4);
  want.writeUInt32LE(1, 8);
  request(12, 4).copy(want, 16, 16, 32);
  BYTES.copy(want, 32, 12, 16);
  t.equal(got.toString('hex'), want.toString('hex'), 'the reply: header, access fields, bytes');
});

t.test('everything else is left on the socket, untouched', async (t) => {
  const cases: [string, Buffer[], number?][] = [
    ['below the range', [request(4, 8)]],
    ['past its end', [request(36, 8)]],
    ['another region', [request(12, 4, { region: 2 })]],
    ['a REGION_WRITE', [request(12, 4, { command: 10 })]],
    ['NO_REPLY', [request(12, 4, { flags: VFIO_USER_F_NO_REPLY })]],
    ['a reply', [request(12, 4, { flags: VFIO_USER_F_TYPE_REPLY })]],
    ['a size field that is not 32', [request(12, 4, { size: 36 })]],
    ['two requests queued', [request(12, 4), request(16, 4)]],
    ['a count above the gate', [request(8, 32)], 16],
    ['the gate closed', [request(12, 4)], -1],
  ];
  for (const [what, msgs, gate] of cases) {
    const r = rig(t, gate ?? 64);
    const p = r.next();
    const bytes = Buffer.concat(msgs);
    n.sendmsg(r.client, bytes, 0, bytes.length);
    const { events, left } = await p;
    t.notOk(events & n.POLL_READ_SERVED, `${what}: not served`);
    t.equal(left, bytes.length, `${what}: JS reads all of it`);
    t.equal(reply(r.client), null, `${what}: no reply`);
  }
});

t.test('a read that brings an fd is left to JS, fd and all', async (t) => {
  const r = rig(t);
  const fd = n.eventfd(0);
  t.teardown(() => n.close(fd));
  const p = r.next();
  n.sendmsg(r.client, request(12, 4), 0, 32, [fd]);
  const { events, left, fds } = await p;
  t.notOk(events & n.POLL_READ_SERVED, 'not served');
  t.same([left, fds], [32, 1], 'JS reads the request and its fd');
});

t.test('watchReads checks its arguments', async (t) => {
  const [a, b] = n.socketpair();
  const w = n.watch(b, n.READABLE, () => {});
  t.teardown(() => { n.close(a); n.close(b); });
  const shared = new Int32Array(n.READS_SHARED_FIELDS);
  const out = Buffer.alloc(64);
  const range = { region: 7, offset: 0, bytes: Buffer.alloc(8) };
  t.throws(() => n.watchReads(w, new Uint32Array(2) as unknown as Int32Array, out, []), TypeError, 'shared: an Int32Array');
  t.throws(() => n.watchReads(w, new Int32Array(1), out, []), RangeError, 'shared: long enough');
  t.throws(() => n.watchReads(w, shared, Buffer.alloc(31), []), RangeError, 'out: room for a header and access fields');
  t.throws(() => n.watchReads(w, shared, out, {} as never), TypeError, 'ranges: an array');
  t.throws(() => n.watchReads(w, shared, out, Array(n.READS_MAX_RANGES + 1).fill(range)), RangeError, 'at most READS_MAX_RANGES ranges');
  t.throws(() => n.watchReads(w, shared, out, [{ ...range, region: -1 }]), RangeError, 'region: a u32');
  t.throws(() => n.watchReads(w, shared, out, [{ ...range, offset: 2 ** 53 - 4 }]), RangeError, 'offset + length within 2^53');
  t.throws(() => n.watchReads(w, shared, out, [{ ...range, bytes: [1, 2] as never }]), TypeError, 'bytes: a Uint8Array');
  n.watchReads(w, shared, out, Array(n.READS_MAX_RANGES).fill(range));
  t.pass('READS_MAX_RANGES ranges are fine');
  n.watchClose(w);
  t.throws(() => n.watchReads(w, shared, out, []), { code: 'EBADF' }, 'EBADF after watchClose');
});
