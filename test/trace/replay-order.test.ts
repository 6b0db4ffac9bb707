// How replay matches what a server sends when the order legitimately
// varies, and that it still catches what differs: a hand-made recording (a
// doorbell, then two DMA_READs and a DMA_WRITE built from what they read)
// replayed against a small scripted server that sends the DMA_READs in the
// other order, or writes other data, or never writes.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { HEADER_SIZE, readHeader, requestHeader, writeHeader, type Header } from '../../protocol/header.js';
import { Command, VFIO_USER_F_NO_REPLY, VFIO_USER_F_TYPE_REPLY } from '../../protocol/constants.js';
import { DEFAULT_LIMITS } from '../../protocol/limits.js';
import {
  decodeDmaWriteRequest, encodeDmaReadReply, encodeDmaReadRequest, encodeDmaWriteReply, encodeDmaWriteRequest,
} from '../../protocol/commands/dma-access.js';
import { encodeRegionWriteRequest } from '../../protocol/commands/region-access.js';
import { Recorder } from '../../trace/recorder.js';
import { readTrace } from '../../trace/reader.js';
import { replay } from '../../replay/replay.js';

const A = 0x1000n;
const B = 0x2000n;
const C = 0x3000n;
const DATA_A = Buffer.from('aaaa');
const DATA_B = Buffer.from('bbbb');
const LIMITS = { ...DEFAULT_LIMITS };

function frame(h: Header, payload: Buffer | readonly Buffer[]): Buffer {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.concat(payload);
  const out = Buffer.alloc(HEADER_SIZE + body.length);
  writeHeader(out, 0, { ...h, size: out.length });
  body.copy(out, HEADER_SIZE);
  return out;
}

function replyHeader(msgId: number, command: number): Header {
  return { msgId, command, size: 0, flags: VFIO_USER_F_TYPE_REPLY, error: 0 };
}

/** The recording: the device reads A then B after the doorbell, then writes A's and B's bytes to C. */
function makeRecording(file: string): void {
  const rec = Recorder.open(file);
  const s = rec.session('dev0');
  const bell = frame({ msgId: 1, command: Command.REGION_WRITE, size: 0, flags: VFIO_USER_F_NO_REPLY, error: 0 },
    encodeRegionWriteRequest({ region: 0, offset: 0, data: Buffer.from([1, 0]) }));
  s.received(bell, 0, bell.length, []);
  const sent = (h: Header, p: Buffer | readonly Buffer[]) => s.sent(h, Buffer.isBuffer(p) ? [p] : p);
  const got = (b: Buffer) => s.received(b, 0, b.length, []);
  sent(requestHeader(0, Command.DMA_READ, 16), encodeDmaReadRequest(A, 4, LIMITS));
  sent(requestHeader(1, Command.DMA_READ, 16), encodeDmaReadRequest(B, 4, LIMITS));
  got(frame(replyHeader(0, Command.DMA_READ), encodeDmaReadReply({ addr: A, count: 4 }, DATA_A)));
  got(frame(replyHeader(1, Command.DMA_READ), encodeDmaReadReply({ addr: B, count: 4 }, DATA_B)));
  sent(requestHeader(2, Command.DMA_WRITE, 24), encodeDmaWriteRequest(C, Buffer.concat([DATA_A, DATA_B]), LIMITS));
  got(frame(replyHeader(2, Command.DMA_WRITE), encodeDmaWriteReply({ addr: C, count: 8 })));
  s.closed('eof');
  rec.close();
}

type Behaviour = 'swapped' | 'other-data' | 'no-write';

/**
 * A scripted server: on the doorbell it reads B, then A (the other order,
 * new msg ids), and writes what it read to C; it reports what the replies held.
 */
function scriptedServer(t: Test, sock: string, how: Behaviour): { answers: Map<bigint, Buffer> } {
  const answers = new Map<bigint, Buffer>();
  const server = net.createServer((conn) => {
    let buf = Buffer.alloc(0);
    const pending = new Map<number, bigint>();
    conn.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= HEADER_SIZE && buf.length >= readHeader(buf, 0).size) {
        const h = readHeader(buf, 0);
        const payload = buf.subarray(HEADER_SIZE, h.size);
        buf = buf.subarray(h.size);
        if (h.command === Command.REGION_WRITE) {
          pending.set(7, B);
          pending.set(8, A);
          conn.write(frame(requestHeader(7, Command.DMA_READ, 16), encodeDmaReadRequest(B, 4, LIMITS)));
          conn.write(frame(requestHeader(8, Command.DMA_READ, 16), encodeDmaReadRequest(A, 4, LIMITS)));
        } else if (h.command === Command.DMA_READ) {
          answers.set(pending.get(h.msgId)!, Buffer.from(decodeDmaWriteRequest(payload, LIMITS, 0).data));
          if (answers.size === 2 && how !== 'no-write') {
            const data = how === 'other-data' ? Buffer.from('aaaaBBBB') : Buffer.concat([answers.get(A)!, answers.get(B)!]);
            conn.write(frame(requestHeader(9, Command.DMA_WRITE, 24), encodeDmaWriteRequest(C, data, LIMITS)));
          }
        }
      }
    });
    conn.on('error', () => {});
  });
  server.listen(sock);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { answers };
}

async function run(t: Test, how: Behaviour) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-order-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'r.vut');
  makeRecording(file);
  const sock = path.join(dir, 's.sock');
  const srv = scriptedServer(t, sock, how);
  const r = await replay(readTrace(file), { socket: sock, timeoutMs: 500 });
  return { r, answers: srv.answers };
}

t.test('DMA_READs in the other order: each answered with its own recorded data, no divergence', async (t) => {
  const { r, answers } = await run(t, 'swapped');
  t.equal(r.divergence, null, 'no divergence', { d: r.divergence });
  t.same(answers.get(A), DATA_A, 'the read of A got A\'s recorded bytes');
  t.same(answers.get(B), DATA_B, 'the read of B got B\'s recorded bytes');
  t.equal(r.matched, 3, 'both reads and the write matched');
});

t.test('a DMA_WRITE with other data: the divergence, at that request, with the data diff', async (t) => {
  const { r } = await run(t, 'other-data');
  t.ok(r.divergence, 'diverges');
  t.match(r.divergence?.recorded, /S->C DMA_WRITE #2 addr=0x3000 count=8 data=6161616162626262/, 'the recorded DMA_WRITE');
  t.match(r.divergence?.replayed, /S->C DMA_WRITE #9 addr=0x3000 count=8 data=6161616142424242/, 'the one the server sent');
  t.same(r.divergence?.fields.map((f) => f.field), ['data (8 vs 8 bytes, first difference at byte 4)'], 'only data differs');
});

t.test('a recorded DMA_WRITE that never comes: the divergence names it', async (t) => {
  const { r } = await run(t, 'no-write');
  t.match(r.divergence?.what, /did not send the recorded DMA_WRITE #2: not within 500 ms/, 'says what was missing', { d: r.divergence });
  t.match(r.divergence?.recorded, /DMA_WRITE #2 addr=0x3000/, 'and shows it');
});
