import t from 'tap';
import { Command, commandName, VFIO_USER_F_ERROR, VFIO_USER_F_NO_REPLY, VFIO_USER_F_TYPE_REPLY } from '../../protocol/constants.js';
import { Errno } from '../../protocol/errno.js';
import {
  HEADER_OK, HEADER_SIZE, hasError, isReply, maxMessageSize, noReply, readHeader, replyHeader, requestHeader,
  validateReplyHeader, validateRequestHeader, writeHeader, type Header,
} from '../../protocol/header.js';
import { DEFAULT_LIMITS } from '../../protocol/limits.js';

const L = DEFAULT_LIMITS;
const cmd = (over: Partial<Header> = {}): Header => ({ msgId: 7, command: Command.REGION_READ, size: 32, flags: 0, error: 0, ...over });

t.test('header round trip at an offset, little-endian', async (t) => {
  const buf = Buffer.alloc(4 + HEADER_SIZE);
  const h: Header = { msgId: 0xbeef, command: 9, size: 0x12345678, flags: VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR, error: 22 };
  writeHeader(buf, 4, h);
  t.same(readHeader(buf, 4), h);
  t.equal(buf.toString('hex', 4, 8), 'efbe0900');
  t.equal(HEADER_SIZE, 16);
});

t.test('flag helpers', async (t) => {
  t.ok(isReply(VFIO_USER_F_TYPE_REPLY));
  t.notOk(isReply(VFIO_USER_F_NO_REPLY));
  t.ok(noReply(VFIO_USER_F_NO_REPLY));
  t.ok(hasError(VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR));
  t.notOk(hasError(VFIO_USER_F_TYPE_REPLY));
});

t.test('request and reply headers', async (t) => {
  const req = requestHeader(3, Command.DMA_READ, 16, VFIO_USER_F_NO_REPLY | VFIO_USER_F_TYPE_REPLY);
  t.same(req, { msgId: 3, command: 11, size: 32, flags: VFIO_USER_F_NO_REPLY, error: 0 });
  t.same(replyHeader(cmd(), 20), { msgId: 7, command: 9, size: 36, flags: VFIO_USER_F_TYPE_REPLY, error: 0 });
  t.same(replyHeader(cmd(), 20, Errno.EINVAL),
    { msgId: 7, command: 9, size: 16, flags: VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR, error: 22 });
});

t.test('maxMessageSize covers a full data transfer or any control message', async (t) => {
  t.equal(maxMessageSize(L), 16 + 16 + 1024 * 1024);
  t.equal(maxMessageSize({ ...L, maxDataXferSize: 4096 }), 16 + 8192);
});

t.test('validateRequestHeader', async (t) => {
  t.equal(validateRequestHeader(cmd(), L), HEADER_OK);
  t.equal(validateRequestHeader(cmd({ size: maxMessageSize(L) }), L), HEADER_OK);
  t.equal(validateRequestHeader(cmd({ command: Command.DIRTY_PAGES }), L).action, 'accept');
  t.equal(validateRequestHeader(cmd({ flags: VFIO_USER_F_NO_REPLY }), L).action, 'accept');
  t.match(validateRequestHeader(cmd({ size: 15 }), L), { action: 'drop', errno: Errno.EINVAL });
  t.match(validateRequestHeader(cmd({ size: 0 }), L), { action: 'drop' });
  t.match(validateRequestHeader(cmd({ size: maxMessageSize(L) + 1 }), L), { action: 'drop', errno: Errno.EMSGSIZE });
  t.match(validateRequestHeader(cmd({ size: 0xffffffff }), L), { action: 'drop' });
  t.match(validateRequestHeader(cmd({ flags: VFIO_USER_F_TYPE_REPLY }), L), { action: 'ignore', errno: Errno.EINVAL });
  t.match(validateRequestHeader(cmd({ flags: 2 }), L), { action: 'reply-error', errno: Errno.EINVAL });
  t.match(validateRequestHeader(cmd({ flags: 0xf }), L), { action: 'reply-error', errno: Errno.EINVAL });
  t.match(validateRequestHeader(cmd({ command: 0 }), L), { action: 'reply-error', errno: Errno.EINVAL });
  t.match(validateRequestHeader(cmd({ command: 19 }), L), { action: 'reply-error', errno: Errno.EINVAL });
  t.match(validateRequestHeader(cmd({ command: Command.DMA_READ }), L), { action: 'reply-error' });
  t.match(validateRequestHeader(cmd({ command: Command.DMA_WRITE }), L), { action: 'reply-error' });
  // framing problems win over everything else: nothing can be replied
  t.match(validateRequestHeader(cmd({ size: 8, command: 99, flags: 1 }), L), { action: 'drop' });
});

t.test('validateReplyHeader', async (t) => {
  t.equal(validateReplyHeader(cmd({ flags: VFIO_USER_F_TYPE_REPLY }), L), HEADER_OK);
  t.equal(validateReplyHeader(cmd({ flags: VFIO_USER_F_TYPE_REPLY | VFIO_USER_F_ERROR, size: 16 }), L), HEADER_OK);
  t.match(validateReplyHeader(cmd(), L), { action: 'reply-error' });
  t.match(validateReplyHeader(cmd({ flags: 1, size: 4 }), L), { action: 'drop' });
});

t.test('commandName', async (t) => {
  for (let c = 1; c <= 18; c++) t.not(commandName(c), `command ${c}`, `command ${c} has a name`);
  t.equal(commandName(Command.REGION_READ), 'REGION_READ');
  t.equal(commandName(14), 'DIRTY_PAGES');
  t.equal(commandName(99), 'command 99');
});
