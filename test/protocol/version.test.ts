import t from 'tap';
import { DEFAULT_LIMITS } from '../../protocol/limits.js';
import { CONTROL_PAYLOAD_MAX } from '../../protocol/header.js';
import {
  SERVER_CAPS, decodeVersionReply, decodeVersionRequest, encodeVersionReply, encodeVersionRequest, negotiateVersion,
  type VersionCaps,
} from '../../protocol/version.js';
import { QEMU_CAPS, errnoOf } from './helpers.js';

const L = DEFAULT_LIMITS;
/** A raw VERSION payload: major, minor, then `json` bytes as given. */
function raw(json: string | Buffer | null, major = 0, minor = 0): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16LE(major, 0);
  head.writeUInt16LE(minor, 2);
  if (json === null) return head;
  return Buffer.concat([head, typeof json === 'string' ? Buffer.from(json) : json]);
}
const withNul = (s: string) => raw(s + '\0');
const negotiate = (caps: VersionCaps | null) => negotiateVersion(decodeVersionRequest(encodeVersionRequest(caps), L, 0));
const replyCaps = (p: Buffer) => JSON.parse(p.subarray(4, p.length - 1).toString()).capabilities;

t.test('QEMU 11.1 offer, as QEMU serializes it', async (t) => {
  const json = '{"capabilities": {"migration": {"pgsize": 4096, "max_bitmap_size": 268435456}, "max_msg_fds": 16, ' +
    '"max_data_xfer_size": 1048576, "pgsizes": 4096, "max_dma_maps": 65535, "write_multiple": true}}';
  const req = decodeVersionRequest(withNul(json), L, 0);
  t.same(req.caps, QEMU_CAPS);
  const { reply, limits } = negotiateVersion(req);
  t.same(limits, { maxMsgFds: 16, maxDataXferSize: 1 << 20, pgsizes: 4096, maxDmaMaps: 65535, writeMultiple: true,
    peerMaxMsgFds: 16, peerMaxDataXferSize: 1 << 20 });
  const p = encodeVersionReply(reply);
  t.equal(p.readUInt16LE(0), 0);
  t.equal(p.readUInt16LE(2), 0);
  t.equal(p[p.length - 1], 0, 'NUL-terminated');
  t.same(replyCaps(p), { max_msg_fds: 16, max_data_xfer_size: 1048576, pgsizes: 4096, max_dma_maps: 65535, write_multiple: true });
  t.same(decodeVersionReply(p).caps, { maxMsgFds: 16, maxDataXferSize: 1048576, pgsizes: 4096, maxDmaMaps: 65535, writeMultiple: true });
});

t.test('no JSON, or no capabilities: defaults, and the reply still carries JSON', async (t) => {
  const none = negotiateVersion(decodeVersionRequest(raw(null), L, 0));
  t.same(none.limits, DEFAULT_LIMITS);
  t.same(replyCaps(encodeVersionReply(none.reply)), {});
  t.same(decodeVersionRequest(withNul('{}'), L, 0).caps, {});
  t.same(decodeVersionRequest(withNul('{"other":1}'), L, 0).caps, {}, 'unknown top-level keys ignored');
});

t.test('clamping and the subset rule', async (t) => {
  let n = negotiate({ maxMsgFds: 1000 });
  t.equal(n.limits.maxMsgFds, 16);
  t.equal(n.limits.peerMaxMsgFds, 16);
  t.same(n.reply.caps, { maxMsgFds: 16 }, 'reply names only what was proposed');
  n = negotiate({ maxMsgFds: 4 });
  t.equal(n.limits.maxMsgFds, 16, 'we still accept 16');
  t.equal(n.limits.peerMaxMsgFds, 4, 'we send at most 4');
  t.equal(negotiate({ maxDataXferSize: 128 << 20 }).limits.maxDataXferSize, 1 << 20, 'server default 1 MiB');
  t.equal(negotiateVersion(decodeVersionRequest(encodeVersionRequest({ maxDataXferSize: 128 << 20 }), L, 0),
    { ...SERVER_CAPS, maxDataXferSize: 1 << 30 }).limits.maxDataXferSize, 64 << 20, 'never above 64 MiB');
  n = negotiate({ maxDataXferSize: 100 });
  t.equal(n.limits.maxDataXferSize, 4096, 'must cover a 4 KiB config space read');
  t.equal(n.limits.peerMaxDataXferSize, 100);
  t.equal(negotiate({ maxDataXferSize: 65536 }).limits.maxDataXferSize, 65536);
  t.equal(negotiate({ maxDmaMaps: 100000 }).limits.maxDmaMaps, 65535);
  t.equal(negotiate({ maxDmaMaps: 10 }).limits.maxDmaMaps, 10);
  t.equal(negotiate({ writeMultiple: false }).limits.writeMultiple, false);
  t.same(negotiate({ writeMultiple: false }).reply.caps, { writeMultiple: false });
  t.equal(negotiate({}).limits.writeMultiple, false, 'not offered, not used');
  t.equal(negotiate({ migration: {} }).reply.caps?.migration, undefined, 'migration never in the reply');
});

t.test('pgsizes', async (t) => {
  t.equal(negotiate({ pgsizes: 0x201000 }).limits.pgsizes, 4096);
  t.equal(negotiate({ pgsizes: 0x200000 }).limits.pgsizes, 0x200000);
  t.equal(negotiate({ pgsizes: 0xfffff000 }).limits.pgsizes, 4096);
  t.equal(errnoOf(() => negotiate({ pgsizes: 0x800 })), 'EINVAL');
  t.equal(errnoOf(() => decodeVersionRequest(withNul('{"capabilities":{"pgsizes":0}}'), L, 0)), 'EINVAL');
});

t.test('versions', async (t) => {
  t.equal(negotiateVersion(decodeVersionRequest(raw(null, 0, 5), L, 0)).reply.minor, 0, 'minor > 0 answered with 0');
  t.equal(errnoOf(() => decodeVersionRequest(raw(null, 1, 0), L, 0)), 'EINVAL');
  t.equal(errnoOf(() => decodeVersionRequest(encodeVersionRequest({}, 0xffff), L, 0)), 'EINVAL');
});

t.test('malformed requests are EINVAL', async (t) => {
  const bad: Array<[string, Buffer, number?]> = [
    ['fds', encodeVersionRequest(QEMU_CAPS), 1],
    ['3 bytes', Buffer.alloc(3)],
    ['empty', Buffer.alloc(0)],
    ['no NUL', raw('{}')],
    ['trailing garbage', raw('{}\0xyz')],
    ['two NULs', raw('{}\0\0')],
    ['just a NUL', raw('\0')],
    ['bad JSON', withNul('{')],
    ['invalid UTF-8', raw(Buffer.from([0x7b, 0xff, 0x7d, 0]))],
    ['array', withNul('[1]')],
    ['string', withNul('"x"')],
    ['null', withNul('null')],
    ['caps not an object', withNul('{"capabilities":5}')],
    ['caps an array', withNul('{"capabilities":[]}')],
    ['caps null', withNul('{"capabilities":null}')],
    ['fds a string', withNul('{"capabilities":{"max_msg_fds":"16"}}')],
    ['fds negative', withNul('{"capabilities":{"max_msg_fds":-1}}')],
    ['fds fractional', withNul('{"capabilities":{"max_msg_fds":1.5}}')],
    ['xfer a bool', withNul('{"capabilities":{"max_data_xfer_size":true}}')],
    ['maps null', withNul('{"capabilities":{"max_dma_maps":null}}')],
    ['write_multiple a number', withNul('{"capabilities":{"write_multiple":1}}')],
    ['migration a number', withNul('{"capabilities":{"migration":5}}')],
    ['twin_socket a string', withNul('{"capabilities":{"twin_socket":"yes"}}')],
  ];
  for (const [name, p, nfds] of bad) t.equal(errnoOf(() => decodeVersionRequest(p, L, nfds ?? 0)), 'EINVAL', name);
  t.same(decodeVersionRequest(withNul('{"capabilities":{"future_cap":[1,2]}}'), L, 0).caps, {}, 'unknown caps ignored');
});

t.test('client side: decodeVersionReply applies QEMU 11.1 rules', async (t) => {
  const ok = encodeVersionReply({ major: 0, minor: 0, caps: { maxMsgFds: 16 } });
  t.same(decodeVersionReply(ok).caps, { maxMsgFds: 16 });
  t.equal(errnoOf(() => decodeVersionReply(encodeVersionReply({ major: 0, minor: 1, caps: {} }))), 'EINVAL', 'minor 1');
  t.equal(errnoOf(() => decodeVersionReply(encodeVersionReply({ major: 1, minor: 0, caps: {} }))), 'EINVAL', 'major 1');
  t.equal(errnoOf(() => decodeVersionReply(raw(null))), 'EINVAL', 'no JSON');
  t.equal(errnoOf(() => decodeVersionReply(encodeVersionReply({ major: 0, minor: 0, caps: { maxMsgFds: 17 } }))), 'EINVAL');
  t.equal(errnoOf(() => decodeVersionReply(encodeVersionReply({ major: 0, minor: 0, caps: { maxDataXferSize: (64 << 20) + 1 } }))), 'EINVAL');
  t.equal(errnoOf(() => decodeVersionReply(encodeVersionReply({ major: 0, minor: 0, caps: { pgsizes: 1000 } }))), 'EINVAL');
  t.equal(errnoOf(() => decodeVersionReply(encodeVersionReply({ major: 0, minor: 0, caps: { maxDmaMaps: 65536 } }))), 'EINVAL');
});

t.test('the reply fits the buffer QEMU allots for it (the size of its request)', async (t) => {
  const spaced = '{"capabilities": {"migration": {"pgsize": 4096, "max_bitmap_size": 268435456}, "max_msg_fds": 16, ' +
    '"max_data_xfer_size": 1048576, "pgsizes": 4096, "max_dma_maps": 65535, "write_multiple": true}}';
  for (const req of [withNul(spaced), encodeVersionRequest(QEMU_CAPS)]) {
    const reply = encodeVersionReply(negotiateVersion(decodeVersionRequest(req, L, 0)).reply);
    t.ok(reply.length <= req.length, `${reply.length} <= ${req.length}`);
  }
});

t.test('a VERSION payload above CONTROL_PAYLOAD_MAX is EINVAL before its JSON is parsed', async (t) => {
  const padded = (total: number): Buffer => {
    const json = '{"capabilities": {"max_msg_fds": 16}}';
    return withNul(json + ' '.repeat(total - 4 - json.length - 1));
  };
  t.equal(padded(CONTROL_PAYLOAD_MAX).length, CONTROL_PAYLOAD_MAX);
  t.equal(decodeVersionRequest(padded(CONTROL_PAYLOAD_MAX), L, 0).caps?.maxMsgFds, 16, 'exactly the maximum is fine');
  t.equal(errnoOf(() => decodeVersionRequest(padded(CONTROL_PAYLOAD_MAX + 1), L, 0)), 'EINVAL', 'one byte more');
  const deep = withNul('['.repeat(L.maxDataXferSize / 2 - 8) + ']'.repeat(L.maxDataXferSize / 2 - 8));
  t.equal(errnoOf(() => decodeVersionRequest(deep, L, 0)), 'EINVAL', '1 MiB of nested arrays (as long as a pre-VERSION message may be)');
  t.equal(errnoOf(() => decodeVersionReply(padded(CONTROL_PAYLOAD_MAX + 1))), 'EINVAL', 'client side too');
});
