// The log names the real reason a client went away: connection reset (the
// peer closed with our replies unread), EOF, broken pipe, protocol error,
// server shutdown; never a poll status misread as EBADF. After each, the
// server accepts the next client.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as native from '../../native/index.js';
import { Command, MAX_MSG_FDS_LIMIT, VFIO_USER_F_TYPE_COMMAND } from '../../protocol/constants.js';
import { HEADER_SIZE, writeHeader } from '../../protocol/header.js';
import { encodeVersionRequest } from '../../protocol/version.js';
import { encodeDeviceGetInfoRequest } from '../../protocol/commands/device-get-info.js';
import { setLogLevel, setLogSink } from '../../server/log.js';
import { startServer, type RunningServer } from '../../server/runtime.js';
import { VfioUserClient } from '../../testing/vfio-user-client.js';

/** One request message: header + payload. */
function message(msgId: number, command: number, payload: Buffer = Buffer.alloc(0), size = HEADER_SIZE + payload.length): Buffer {
  const b = Buffer.alloc(HEADER_SIZE + payload.length);
  writeHeader(b, 0, { msgId, command, size, flags: VFIO_USER_F_TYPE_COMMAND, error: 0 });
  payload.copy(b, HEADER_SIZE);
  return b;
}

/** VERSION and two DEVICE_GET_INFO: three requests, three replies. */
function requests(): Buffer {
  return Buffer.concat([
    message(1, Command.VERSION, encodeVersionRequest({ maxMsgFds: 8, maxDataXferSize: 1 << 20 })),
    message(2, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest()),
    message(3, Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest()),
  ]);
}

/** Resolves once fd is readable (the watcher is closed first). */
function readable(fd: number): Promise<void> {
  return new Promise((resolve) => {
    const w = native.watch(fd, native.READABLE, () => {
      native.watchClose(w);
      resolve();
    });
  });
}

function sendAll(t: Test, fd: number, bytes: Buffer): void {
  t.equal(native.sendmsg(fd, bytes, 0, bytes.length), bytes.length, 'the requests went out in one send');
}

interface Harness {
  rt: RunningServer;
  sock: string;
  lines: string[];
  /** Resolves with the log lines of the next client's end, once it is processed. */
  nextDisconnect(): Promise<string[]>;
}

async function start(t: Test): Promise<Harness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-disc-'));
  const sock = path.join(dir, 'gpio.sock');
  const lines: string[] = [];
  setLogLevel('info');
  const restore = setLogSink((l) => lines.push(l));
  const rt = await startServer({ devices: [{ name: 'gpio0', kind: 'gpio', socket: sock, options: {} }] });
  t.teardown(async () => {
    await rt.close();
    restore();
    setLogLevel('error');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const host = rt.host('gpio0');
  return {
    rt, sock, lines,
    nextDisconnect: () => {
      const from = lines.length;
      return new Promise((resolve) => host.once('disconnect', () => resolve(lines.slice(from).filter((l) => /client (dropped|disconnected)/.test(l)))));
    },
  };
}

/** The server still serves: a new client negotiates and reads device info. */
async function serves(t: Test, h: Harness): Promise<void> {
  const c = await VfioUserClient.open(h.sock);
  const r = await c.request(Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
  t.equal(r.errno, 0, 'the next client is served');
  const gone = h.nextDisconnect();
  c.close();
  await gone;
}

t.test('closing with replies unread: connection reset (ECONNRESET), not a poll error', async (t) => {
  const h = await start(t);
  const fd = native.connectUnix(h.sock);
  const gone = h.nextDisconnect();
  sendAll(t, fd, requests());
  await readable(fd); // the replies are waiting in our socket: never read them
  native.close(fd);
  const log = await gone;
  t.equal(log.length, 1, 'one line about the end');
  t.match(log[0], /connection reset by peer \(ECONNRESET\)/);
  t.notMatch(log[0], /EBADF|poll error|-9/);
  await serves(t, h);
});

t.test('closing after reading every reply: peer closed (EOF), logged as a normal end', async (t) => {
  const h = await start(t);
  const c = await VfioUserClient.open(h.sock);
  t.equal((await c.request(Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest())).errno, 0);
  const gone = h.nextDisconnect();
  c.close();
  const log = await gone;
  t.equal(log.length, 1);
  t.match(log[0], /info .*client disconnected: peer closed the connection \(EOF\)/);
  await serves(t, h);
});

t.test('closing right after sending: our replies meet a broken pipe (EPIPE)', async (t) => {
  const h = await start(t);
  const fd = native.connectUnix(h.sock);
  const gone = h.nextDisconnect();
  sendAll(t, fd, requests());
  native.close(fd); // before the server (this process) could read anything
  const log = await gone;
  t.equal(log.length, 1);
  t.match(log[0], /broken pipe \(EPIPE\)/);
  await serves(t, h);
});

t.test('a message size below the header: protocol error, with what', async (t) => {
  const h = await start(t);
  const fd = native.connectUnix(h.sock);
  const gone = h.nextDisconnect();
  sendAll(t, fd, message(1, Command.VERSION, Buffer.alloc(0), 8));
  const log = await gone;
  native.close(fd);
  t.equal(log.length, 1);
  t.match(log[0], /warn .*client dropped: protocol error: message size 8 outside \[16, \d+\]/);
  await serves(t, h);
});

t.test('server shutdown with a client connected says so', async (t) => {
  const h = await start(t);
  const c = await VfioUserClient.open(h.sock);
  const gone = h.nextDisconnect();
  await h.rt.close();
  const log = await gone;
  c.close();
  t.equal(log.length, 1);
  t.match(log[0], /info .*client disconnected: server shutdown/);
});

t.test('more fds than we accept in one message: fd truncation (MSG_CTRUNC)', async (t) => {
  const h = await start(t);
  const fd = native.connectUnix(h.sock);
  const gone = h.nextDisconnect();
  const extra = Array.from({ length: MAX_MSG_FDS_LIMIT + 1 }, () => native.eventfd(0));
  const m = message(1, Command.VERSION, encodeVersionRequest({ maxMsgFds: 8, maxDataXferSize: 1 << 20 }));
  t.equal(native.sendmsg(fd, m, 0, m.length, extra), m.length);
  for (const e of extra) native.close(e);
  const log = await gone;
  native.close(fd);
  t.equal(log.length, 1);
  t.match(log[0], new RegExp(`warn .*client dropped: fd truncation \\(MSG_CTRUNC\\): more than ${MAX_MSG_FDS_LIMIT} fds`));
  await serves(t, h);
});
