// Fairness between the connections of one serve process: a wake-up reads a
// bounded number of messages of one socket (whole reads of up to 64 KiB: the
// budget stops further reads, not the messages of one read), and no poll
// window opens on a socket left unread, so a client with thousands of
// requests queued does not make another device's client wait for all of
// them. The order in which the server took the requests comes from a
// recording of the run.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readTrace } from '../../trace/reader.js';
import type { MessageRecord } from '../../trace/format.js';
import { VfioUserClient } from '../../testing/vfio-user-client.js';
import { Command } from '../../protocol/constants.js';
import { encodeRegionReadRequest } from '../../protocol/commands/region-access.js';
import { startServeChild } from '../sdk/serve-child.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const FLOOD = 20_000;
/** Config space, 4 bytes at 0: any device answers it. */
const READ = encodeRegionReadRequest({ region: 7, offset: 0, count: 4 });

t.test("a client with 20,000 requests queued delays another device's request by a few reads' worth, not all of them", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfio-wakeup-budget-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'run.vut');
  const sockA = path.join(dir, 'a.sock');
  const sockB = path.join(dir, 'b.sock');
  const config = path.join(dir, 'devices.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      devices: [
        { name: 'a', kind: 'gpio', socket: sockA },
        { name: 'b', kind: 'gpio', socket: sockB },
      ],
      record: file,
    }),
  );
  const child = await startServeChild(process.execPath, [path.join(root, 'bin/vfio-user-ts.js'), 'serve', '--config', config], dir);
  t.teardown(() => child.kill('SIGKILL'));
  const a = await VfioUserClient.open(sockA);
  const b = await VfioUserClient.open(sockB);
  try {
    // About 640 KiB of requests: the client writes on as the server reads.
    const ids: number[] = [];
    const bytes = Buffer.concat(
      Array.from({ length: FLOOD }, () => {
        const m = a.encode(Command.REGION_READ, READ);
        ids.push(m.msgId);
        return m.bytes;
      }),
    );
    const replies = ids.map((id) => a.expectReply(id, 60_000));
    a.sendRaw(bytes);
    // Once the server has begun on them, B asks once.
    await replies[0];
    const rb = await b.request(Command.REGION_READ, READ);
    t.equal(rb.errno, 0, "B's read answered");
    const ra = await Promise.all(replies);
    t.ok(ra.every((r) => r.errno === 0), `all ${FLOOD} of A's reads answered`);
  } finally {
    a.close();
    b.close();
  }
  child.kill('SIGTERM');
  await child.exited;

  const taken = (readTrace(file).records as MessageRecord[]).filter(
    (r) => r.type === 'msg' && r.from === 'client' && r.header.command === Command.REGION_READ,
  );
  t.equal(taken.length, FLOOD + 1, 'every read was recorded');
  const before = taken.slice(0, taken.findIndex((r) => r.device === 'b')).length;
  t.ok(before < FLOOD / 2, `A still had most of its reads queued when B's was taken (${before} of ${FLOOD} before it)`);
});
