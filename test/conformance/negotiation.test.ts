// VERSION negotiation: nothing before VERSION, capability clamping and the
// limits that follow from it, malformed VERSION requests (each answered with
// EINVAL, after which the same connection can still negotiate), and VERSION
// only once.
import t from 'tap';
import type { Test } from 'tap';
import { Command, VFIO_USER_F_TYPE_REPLY } from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import { encodeVersionRequest, type VersionCaps } from '../../protocol/version.js';
import { encodeDmaMapRequest } from '../../protocol/commands/dma-map.js';
import { encodeDmaUnmapRequest } from '../../protocol/commands/dma-unmap.js';
import { encodeDeviceGetInfoRequest } from '../../protocol/commands/device-get-info.js';
import { encodeRegionIoFdsRequest } from '../../protocol/commands/region-io-fds.js';
import { encodeRegionReadRequest } from '../../protocol/commands/region-access.js';
import { encodeRegionWriteMultiRequest } from '../../protocol/commands/region-write-multi.js';
import { encodeMigDataReadRequest } from '../../protocol/commands/mig-data.js';
import {
  BAR2, CFG, DEVICE, QEMU_CAPS, REG, VfioUserClient, assertErrorReply, assertReply, assertServes, closeClient, connectClient, native,
  send, startGpio,
} from './helpers.js';

const fx = await startGpio(t);

/** VERSION payload with raw JSON text (NUL appended unless told otherwise). */
function rawVersion(json: string | Buffer, opts: { major?: number; minor?: number; nul?: boolean } = {}): Buffer {
  const body = Buffer.isBuffer(json) ? json : Buffer.from(json, 'utf8');
  const b = Buffer.alloc(4 + body.length + (opts.nul === false ? 0 : 1));
  b.writeUInt16LE(opts.major ?? 0, 0);
  b.writeUInt16LE(opts.minor ?? 0, 2);
  body.copy(b, 4);
  return b;
}

/** Negotiate on `c` with `payload`; returns the reply's major, minor and parsed JSON. */
async function negotiate(t: Test, c: VfioUserClient, payload: Buffer): Promise<{ major: number; minor: number; json: unknown }> {
  const r = await send(c, Command.VERSION, payload);
  t.equal(r.reply.errno, 0, 'VERSION accepted');
  t.equal(r.reply.header.flags, VFIO_USER_F_TYPE_REPLY, 'plain reply');
  t.equal(r.reply.fds.length, 0, 'no fds');
  const p = r.reply.payload;
  t.equal(p[p.length - 1], 0, 'reply JSON is NUL-terminated');
  return { major: p.readUInt16LE(0), minor: p.readUInt16LE(2), json: JSON.parse(p.subarray(4, p.length - 1).toString('utf8')) };
}

async function negotiatedWith(t: Test, caps: VersionCaps | null): Promise<{ c: VfioUserClient; caps: unknown }> {
  const c = connectClient(t, fx);
  const { json } = await negotiate(t, c, encodeVersionRequest(caps));
  return { c, caps: (json as { capabilities: unknown }).capabilities };
}

t.test('nothing but VERSION before negotiation', async (t) => {
  const c = connectClient(t, fx);
  const early: Array<[number, Buffer]> = [
    [Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x100000n, size: 0x1000n })],
    [Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: 0x100000n, size: 0x1000n })],
    [Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest()],
    [Command.REGION_READ, encodeRegionReadRequest({ offset: 0, region: CFG, count: 4 })],
    [Command.DEVICE_RESET, Buffer.alloc(0)],
    [Command.DMA_READ, Buffer.alloc(16)],
    [0x1234, Buffer.alloc(0)],
  ];
  for (const [command, payload] of early) {
    const r = await send(c, command, payload);
    assertErrorReply(t, r.reply, r, Errno.EINVAL, `command ${command} before VERSION`);
  }
  t.equal(fx.ctx.compatIoas.areaCount, 0, 'the early DMA_MAP mapped nothing');
  await negotiate(t, c, encodeVersionRequest(QEMU_CAPS));
  await assertServes(t, c);
});

t.test('capabilities: what is proposed is answered, clamped to our limits', async (t) => {
  const cases: Array<[string, VersionCaps | null, Record<string, unknown>]> = [
    ['no JSON at all', null, {}],
    ['max_msg_fds above ours', { maxMsgFds: 64 }, { max_msg_fds: 16 }],
    ['max_data_xfer_size below the 4 KiB floor', { maxDataXferSize: 1024 }, { max_data_xfer_size: 4096 }],
    ['max_data_xfer_size above ours', { maxDataXferSize: 128 << 20 }, { max_data_xfer_size: 1 << 20 }],
    ['pgsizes 4K|8K', { pgsizes: 0x3000 }, { pgsizes: 4096 }],
    ['pgsizes 64K only', { pgsizes: 0x10000 }, { pgsizes: 0x10000 }],
    ['max_dma_maps above 65535', { maxDmaMaps: 100000 }, { max_dma_maps: 65535 }],
    ['max_dma_maps 10', { maxDmaMaps: 10 }, { max_dma_maps: 10 }],
    ['write_multiple false', { writeMultiple: false }, { write_multiple: false }],
    ['migration and twin_socket are not answered', { migration: { pgsize: 4096 }, twinSocket: { supported: true } }, {}],
  ];
  for (const [what, caps, want] of cases) {
    await t.test(what, async (t) => {
      const { c, caps: got } = await negotiatedWith(t, caps);
      t.same(got, want, 'reply capabilities');
      await assertServes(t, c);
    });
  }
  await t.test('JSON without "capabilities", unknown keys, minor 7', async (t) => {
    const c = connectClient(t, fx);
    const r = await negotiate(t, c, rawVersion('{"hello":1}', { minor: 7 }));
    t.same([r.major, r.minor, r.json], [0, 0, { capabilities: {} }]);
  });
  await t.test('unknown capability keys are ignored', async (t) => {
    const c = connectClient(t, fx);
    const r = await negotiate(t, c, rawVersion('{"capabilities":{"max_msg_fds":16,"future_thing":{"x":[1,2]}}}'));
    t.same(r.json, { capabilities: { max_msg_fds: 16 } });
  });
});

t.test('the negotiated max_data_xfer_size bounds later requests', async (t) => {
  const { c } = await negotiatedWith(t, { ...QEMU_CAPS, maxDataXferSize: 8192 });
  const okIo = await send(c, Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(BAR2, 8192));
  t.equal(okIo.reply.errno, 0, 'argsz = 8192 accepted');
  const badIo = await send(c, Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(BAR2, 8193));
  assertErrorReply(t, badIo.reply, badIo, Errno.EINVAL, 'argsz 8193');
  const mig = await send(c, Command.MIG_DATA_READ, encodeMigDataReadRequest(8192));
  assertErrorReply(t, mig.reply, mig, Errno.EOPNOTSUPP, 'MIG_DATA_READ of 8192: past validation');
  const migBig = await send(c, Command.MIG_DATA_READ, encodeMigDataReadRequest(8193));
  assertErrorReply(t, migBig.reply, migBig, Errno.EINVAL, 'MIG_DATA_READ of 8193');
  const rd = await send(c, Command.REGION_READ, encodeRegionReadRequest({ offset: 0, region: CFG, count: 256 }));
  t.equal(rd.reply.errno, 0, 'the whole config space still fits');
});

t.test('a 64 KiB page size makes 4 KiB mappings invalid', async (t) => {
  const { c } = await negotiatedWith(t, { ...QEMU_CAPS, pgsizes: 0x10000 });
  const small = await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x100000n, size: 0x1000n }));
  assertErrorReply(t, small.reply, small, Errno.EINVAL, '4 KiB mapping');
  const big = await send(c, Command.DMA_MAP, encodeDmaMapRequest({ addr: 0x100000n, size: 0x10000n }));
  assertReply(t, big.reply, big, Buffer.alloc(0), '64 KiB mapping');
  const un = await send(c, Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: 0x100000n, size: 0x10000n }));
  t.equal(un.reply.errno, 0);
});

t.test('REGION_WRITE_MULTI needs write_multiple', async (t) => {
  const { c } = await negotiatedWith(t, { ...QEMU_CAPS, writeMultiple: false });
  const r = await send(c, Command.REGION_WRITE_MULTI, encodeRegionWriteMultiRequest([{ offset: REG.OUT0_7, region: BAR2, data: Uint8Array.of(1) }]));
  assertErrorReply(t, r.reply, r, Errno.EINVAL);
  await assertServes(t, c);
});

t.test('the VERSION reply is never larger than the request (QEMU reads it into a buffer of the request\'s size)', async (t) => {
  for (const caps of [QEMU_CAPS, { maxMsgFds: 16 }, { maxMsgFds: 1 }, { maxMsgFds: 0, writeMultiple: true }, { maxDataXferSize: 1024 }] as VersionCaps[]) {
    const c = VfioUserClient.connect(fx.sock);
    const req = encodeVersionRequest(caps);
    const r = await send(c, Command.VERSION, req);
    t.equal(r.reply.errno, 0);
    t.ok(r.reply.payload.length <= req.length, `${JSON.stringify(caps)}: reply ${r.reply.payload.length} <= request ${req.length} bytes`);
    await closeClient(fx, c);
  }
});

interface BadVersion { name: string; payload: Buffer; fds?: boolean }
const badVersions: BadVersion[] = [
  { name: 'empty payload', payload: Buffer.alloc(0) },
  { name: '3-byte payload', payload: Buffer.from([0, 0, 0]) },
  { name: 'major 1', payload: encodeVersionRequest(QEMU_CAPS, 1, 0) },
  { name: 'major 0xffff', payload: encodeVersionRequest(null, 0xffff, 0) },
  { name: 'JSON not NUL-terminated', payload: rawVersion('{"capabilities":{}}', { nul: false }) },
  { name: 'bytes after the NUL', payload: Buffer.concat([rawVersion('{"capabilities":{}}'), Buffer.from('x')]) },
  { name: 'NUL inside the JSON', payload: rawVersion('{"capabilities"\0:{}}') },
  { name: 'malformed JSON', payload: rawVersion('{"capabilities":') },
  { name: 'JSON array', payload: rawVersion('[]') },
  { name: 'JSON string', payload: rawVersion('"capabilities"') },
  { name: 'JSON null', payload: rawVersion('null') },
  { name: 'capabilities not an object', payload: rawVersion('{"capabilities":5}') },
  { name: 'capabilities an array', payload: rawVersion('{"capabilities":[]}') },
  { name: 'max_msg_fds negative', payload: rawVersion('{"capabilities":{"max_msg_fds":-1}}') },
  { name: 'max_data_xfer_size a string', payload: rawVersion('{"capabilities":{"max_data_xfer_size":"1M"}}') },
  { name: 'max_dma_maps fractional', payload: rawVersion('{"capabilities":{"max_dma_maps":1.5}}') },
  { name: 'pgsizes 0', payload: rawVersion('{"capabilities":{"pgsizes":0}}') },
  { name: 'pgsizes 2 KiB only (no usable size)', payload: rawVersion('{"capabilities":{"pgsizes":2048}}') },
  { name: 'write_multiple not a boolean', payload: rawVersion('{"capabilities":{"write_multiple":1}}') },
  { name: 'migration not an object', payload: rawVersion('{"capabilities":{"migration":3}}') },
  { name: 'invalid UTF-8', payload: rawVersion(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])) },
  { name: 'an fd with VERSION', payload: encodeVersionRequest(QEMU_CAPS), fds: true },
];

t.test(`${badVersions.length} malformed VERSION requests: EINVAL, then the connection can still negotiate`, async (t) => {
  for (const row of badVersions) {
    await t.test(row.name, async (t) => {
      const c = connectClient(t, fx);
      // One round trip first, so that the server's end of the connection is open when fds are counted.
      const early = await send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
      assertErrorReply(t, early.reply, early, Errno.EINVAL, 'not negotiated yet');
      const fd = row.fds ? native.memfdCreate('version-fd', 4096) : -1;
      const before = native.fdCount();
      try {
        const r = await send(c, Command.VERSION, row.payload, fd >= 0 ? { fds: [fd] } : {});
        assertErrorReply(t, r.reply, r, Errno.EINVAL);
        t.equal(native.fdCount(), before, 'fd closed');
      } finally {
        if (fd >= 0) native.close(fd);
      }
      const still = await send(c, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
      assertErrorReply(t, still.reply, still, Errno.EINVAL, 'still not negotiated');
      await negotiate(t, c, encodeVersionRequest(QEMU_CAPS));
      await assertServes(t, c);
    });
  }
});

t.test('VERSION only once: a second one fails and changes nothing', async (t) => {
  const { c } = await negotiatedWith(t, { ...QEMU_CAPS, maxDataXferSize: 8192 });
  const again = await send(c, Command.VERSION, encodeVersionRequest(QEMU_CAPS));
  assertErrorReply(t, again.reply, again, Errno.EINVAL, 'second VERSION');
  const io = await send(c, Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(BAR2, 8193));
  assertErrorReply(t, io.reply, io, Errno.EINVAL, 'limits of the first VERSION still apply');
  await assertServes(t, c);
});

t.test('the server\'s own DMA_READ/DMA_WRITE respect the client\'s max_data_xfer_size', async (t) => {
  const { c } = await negotiatedWith(t, { ...QEMU_CAPS, maxDataXferSize: 8192 });
  const base = 0x1000_0000n;
  const mem = Buffer.alloc(0x6000);
  for (let i = 0; i < mem.length; i++) mem[i] = (i * 31 + 7) & 0xff;
  c.guest = { base, mem };
  t.equal((await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: base, size: 0x6000n }))).errno, 0);
  const dma = fx.ctx.dma(DEVICE);
  t.same(await dma.read(base + 0x100n, 0x5000), mem.subarray(0x100, 0x5100), '20 KiB read through messages');
  const reads = c.serverRequests.filter((h) => h.command === Command.DMA_READ);
  t.equal(reads.length, 3, 'split into 8192 + 8192 + 4096');
  await dma.write(base, Buffer.alloc(0x4800, 0xab));
  const writes = c.serverRequests.filter((h) => h.command === Command.DMA_WRITE);
  t.equal(writes.length, 3, 'DMA_WRITE split too');
  t.ok(writes.every((h) => h.size <= 8192 + 32), `every DMA_WRITE fits QEMU's limit (max ${Math.max(...writes.map((h) => h.size))} bytes)`);
  t.ok(mem.subarray(0, 0x4800).every((b) => b === 0xab), 'all data written');
  t.equal(mem[0x4800], (0x4800 * 31 + 7) & 0xff, 'nothing written past the end');
  t.equal((await c.request(Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: 0n, size: 0n, flags: 2 }))).errno, 0);
});

t.test('the DMA_READ data the server is owed at once stays within two 64 KiB chunks', async (t) => {
  // QEMU drops the rest of a partial write: its socket buffer toward us must
  // never fill (server/reply-budget.ts). Many device reads at once must wait.
  const { c } = await negotiatedWith(t, QEMU_CAPS);
  const base = 0x2000_0000n;
  const mem = Buffer.alloc(4 << 20);
  for (let i = 0; i < mem.length; i++) mem[i] = (i * 13 + 5) & 0xff;
  c.guest = { base, mem };
  t.equal((await c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr: base, size: BigInt(mem.length) }))).errno, 0);
  // Answer late, and track what is outstanding when each request arrives.
  const owed = new Map<number, number>();
  let maxOwed = 0;
  let maxChunk = 0;
  const inner = c as unknown as { dispatch: (h: { msgId: number; command: number; flags: number }, p: Buffer, f: number[]) => void };
  const orig = inner.dispatch.bind(c);
  inner.dispatch = (h, p, f) => {
    if ((h.flags & 0xf) === VFIO_USER_F_TYPE_REPLY || h.command !== Command.DMA_READ) return orig(h, p, f);
    const count = Number(p.readBigUInt64LE(8));
    maxChunk = Math.max(maxChunk, count);
    owed.set(h.msgId, count + 32);
    let sum = 0;
    for (const v of owed.values()) sum += v;
    maxOwed = Math.max(maxOwed, sum);
    const copy = Buffer.from(p);
    setTimeout(() => { owed.delete(h.msgId); orig(h, copy, f); }, 2);
  };
  const dma = fx.ctx.dma(DEVICE);
  const reads = Array.from({ length: 8 }, (_, i) => dma.read(base + BigInt(i * 512 * 1024), 512 * 1024));
  const got = await Promise.all(reads);
  got.forEach((b, i) => t.ok(b.equals(mem.subarray(i * 512 * 1024, (i + 1) * 512 * 1024)), `read ${i} returned the right 512 KiB`));
  t.ok(maxChunk > 0 && maxChunk <= 64 * 1024, `no DMA_READ asked for more than 64 KiB (largest ${maxChunk})`);
  t.ok(maxOwed <= 2 * (64 * 1024 + 32), `never more than two chunks of replies owed (at most ${maxOwed})`);
  t.ok(maxOwed > 64 * 1024 + 32, `but more than one chunk in flight (${maxOwed})`);
  t.equal((await c.request(Command.DMA_UNMAP, encodeDmaUnmapRequest({ addr: 0n, size: 0n, flags: 2 }))).errno, 0);
});

t.test('the negotiated max_dma_maps is enforced: one DMA_MAP more is ENOSPC', async (t) => {
  const fx = await startGpio(t);
  const c = await VfioUserClient.open(fx.sock, { ...QEMU_CAPS, maxDmaMaps: 2 });
  t.teardown(() => c.close());
  const map = (addr: bigint) => c.request(Command.DMA_MAP, encodeDmaMapRequest({ addr, size: 0x1000n }));
  t.equal((await map(0x100000n)).errno, 0, 'first mapping');
  t.equal((await map(0x200000n)).errno, 0, 'second mapping');
  t.equal((await map(0x300000n)).errno, Errno.ENOSPC, 'third mapping is over the limit');
  t.equal(fx.ctx.compatIoas.areaCount, 2);
});
