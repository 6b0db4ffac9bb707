// node-responder: the least a Node process can do to answer bench/c/loadgen.c,
// i.e. bench/c/responder.c's loop on our native addon (watch, channel recv,
// channel send) with no protocol layer, no device and no checks beyond
// framing. It is not a server: it answers VERSION with fixed capabilities,
// REGION_READ with zero bytes, REGION_WRITE with its header (none if
// NO_REPLY), anything else with ENOSYS. The socket bench runs it beside the C
// responder to show what the Node runtime itself costs, so that "ours / C"
// can be read against "Node floor / C".
//
// usage: node dist/bench/node-responder.js SOCKET_PATH   (SIGINT/SIGTERM: exit)
import { unlinkSync } from 'node:fs';
import * as native from '../native/index.js';

const HDR = 16;
const VERSION = 1;
const REGION_READ = 9;
const REGION_WRITE = 10;
const NO_REPLY = 0x10;
const caps = Buffer.from('{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576}}\0');

function serve(fd: number, onEnd: () => void): void {
  const rbuf = Buffer.alloc(4 << 20);
  const wbuf = Buffer.alloc(4 << 20);
  const meta = new Int32Array(2 + 16);
  const ch = native.channel(fd, meta);
  ch.setBuffers(rbuf, wbuf);
  let have = 0;
  const end = () => {
    native.watchClose(w);
    ch.close();
    native.close(fd);
    onEnd();
  };
  const w = native.watch(fd, native.READABLE, () => {
    for (;;) {
      const n = ch.recv(have, rbuf.length - have);
      if (n === -native.EAGAIN) return;
      if (n <= 0) return end();
      for (let i = 0; i < meta[0]!; i++) native.close(meta[2 + i]!);
      have += n;
      let pos = 0;
      let out = 0;
      while (have - pos >= HDR) {
        const size = rbuf.readUInt32LE(pos + 4);
        if (size < HDR || size > rbuf.length) return end();
        if (have - pos < size) break;
        const cmd = rbuf.readUInt16LE(pos + 2);
        const flags = rbuf.readUInt32LE(pos + 8);
        let len = HDR;
        let err = 0;
        if (cmd === VERSION) {
          wbuf.writeUInt32LE(0, out + HDR);
          caps.copy(wbuf, out + HDR + 4);
          len += 4 + caps.length;
        } else if (cmd === REGION_READ) {
          const count = rbuf.readUInt32LE(pos + HDR + 12);
          rbuf.copy(wbuf, out + HDR, pos + HDR, pos + HDR + 16);
          wbuf.fill(0, out + HDR + 16, out + HDR + 16 + count);
          len += 16 + count;
        } else if (cmd === REGION_WRITE) {
          rbuf.copy(wbuf, out + HDR, pos + HDR, pos + HDR + 16);
          len += 16;
        } else {
          err = 38; // ENOSYS
        }
        if (!(flags & NO_REPLY)) {
          wbuf.writeUInt16LE(rbuf.readUInt16LE(pos), out);
          wbuf.writeUInt16LE(cmd, out + 2);
          wbuf.writeUInt32LE(len, out + 4);
          wbuf.writeUInt32LE(err ? 0x21 : 0x1, out + 8);
          wbuf.writeUInt32LE(err, out + 12);
          out += len;
        }
        pos += size;
      }
      rbuf.copy(rbuf, 0, pos, have);
      have -= pos;
      // The loadgen always reads its replies, so a short send only waits a moment.
      for (let sent = 0; sent < out; ) {
        const s = ch.send(sent, out - sent);
        if (s > 0) sent += s;
        else if (s !== -native.EAGAIN) return end();
      }
    }
  });
}

function main(): void {
  const path = process.argv[2];
  if (!path) {
    console.error('usage: node-responder SOCKET_PATH');
    process.exit(2);
  }
  const lfd = native.listenUnix(path, 16);
  let busy = false;
  const lw = native.watch(lfd, native.READABLE, () => {
    if (busy) return;
    const fd = native.accept(lfd);
    if (fd < 0) return;
    busy = true;
    native.watchSet(lw, 0);
    serve(fd, () => {
      busy = false;
      native.watchSet(lw, native.READABLE);
    });
  });
  const stop = () => {
    try { unlinkSync(path); } catch { /* already gone */ }
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main();
