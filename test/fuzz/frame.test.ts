// The fuzzer's model of what a message is owed, which every reply check
// rests on: whether a reply comes, how large it may be, and when the framing
// is broken on purpose.
import t from 'tap';
import { Command, VFIO_USER_F_NO_REPLY, VFIO_USER_F_TYPE_REPLY } from '../../protocol/constants.js';
import { putU32At } from '../../protocol/header.js';
import { encodeDeviceFeatureRequest } from '../../protocol/commands/device-feature.js';
import { encodeRegionReadRequest } from '../../protocol/commands/region-access.js';
import { encodeRegionInfoRequest } from '../../protocol/commands/region-info.js';
import { describe, frame, maxReplyPayload } from '../../fuzz/frame.js';

t.test('a command is owed one reply unless NO_REPLY or it is itself a reply', async (t) => {
  const p = encodeRegionInfoRequest(7);
  t.ok(describe(frame(1, Command.DEVICE_GET_REGION_INFO, p), [], 'x').reply, 'plain command');
  t.notOk(describe(frame(1, Command.DEVICE_GET_REGION_INFO, p, VFIO_USER_F_NO_REPLY), [], 'x').reply, 'NO_REPLY');
  t.notOk(describe(frame(1, Command.DEVICE_GET_REGION_INFO, p, VFIO_USER_F_TYPE_REPLY), [], 'x').reply, 'a stray reply');
  t.ok(describe(frame(1, Command.DEVICE_GET_REGION_INFO, p, 0x7), [], 'x').reply, 'an unknown type gets an error reply');
});

t.test('reply size limits follow argsz, the REGION_READ count, or the fixed reply', async (t) => {
  t.equal(maxReplyPayload(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest(0, 100)), 100, 'argsz');
  t.equal(maxReplyPayload(Command.DEVICE_FEATURE, encodeDeviceFeatureRequest({ feature: 7, ops: 1 << 18, data: new Uint8Array(8), argsz: 8 })), 8,
    'DEVICE_FEATURE: argsz, not the payload length');
  t.equal(maxReplyPayload(Command.REGION_READ, encodeRegionReadRequest({ offset: 0, region: 7, count: 4 })), 20, 'REGION_READ: 16 + count');
  t.equal(maxReplyPayload(Command.DMA_MAP, Buffer.alloc(32)), 0, 'DMA_MAP: no payload');
  t.equal(maxReplyPayload(Command.DEVICE_GET_INFO, Buffer.alloc(2)), 0, 'no argsz at all: only an error reply fits');
});

t.test('msg_size that is not the real length, or too many fds, breaks framing', async (t) => {
  const b = frame(1, Command.DEVICE_RESET, Buffer.alloc(0));
  t.notOk(describe(b, [], 'x').desync, 'honest');
  const lying = Buffer.from(b);
  putU32At(lying, 4, 17);
  const m = describe(lying, [], 'x');
  t.ok(m.desync, 'msg_size one more than sent');
  t.notOk(m.reply, 'and no reply can be attributed');
  t.ok(describe(b, Array.from({ length: 17 }, (_, i) => i), 'x').desync, '17 fds');
});
