// The copy engine against a raw vfio-user client, as QEMU would talk to it
// but with no guest: ids in config space, registers in BAR0, and the
// bus-master guard (a doorbell before the guest enables DMA is an error).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer } from 'vfio-user-ts';
import {
  VfioUserClient, Command,
  encodeRegionReadRequest, decodeRegionReadReply, encodeRegionWriteRequest,
} from 'vfio-user-ts/testing';
import copyEngine, { Reg, Status } from './copy-engine.js';

const CONFIG = 7; // the PCI config space region

test('registers, ids and the bus-master guard', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'copy-engine-'));
  const socket = path.join(dir, 'ce.sock');
  const server = await startServer({ devices: [{ name: 'ce0', kind: copyEngine, socket }] });
  const client = await VfioUserClient.open(socket);
  t.after(async () => {
    client.close();
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const read32 = async (region, offset) => {
    const r = await client.request(Command.REGION_READ, encodeRegionReadRequest({ region, offset, count: 4 }));
    return decodeRegionReadReply(r.payload, 4).data.readUInt32LE(0);
  };
  const write32 = async (region, offset, value) => {
    const data = Buffer.alloc(4);
    data.writeUInt32LE(value);
    const r = await client.request(Command.REGION_WRITE, encodeRegionWriteRequest({ region, offset, data }));
    assert.equal(r.errno, 0);
  };

  assert.equal(await read32(CONFIG, 0), 0xc0de_1234, 'vendor and device ids');
  await write32(0, Reg.LEN, 64);
  assert.equal(await read32(0, Reg.LEN), 64);

  await write32(0, Reg.DOORBELL, 1);
  let status;
  while ((status = await read32(0, Reg.STATUS)) & Status.BUSY);
  assert.equal(status, Status.ERROR, 'no DMA while bus mastering is off');
  assert.equal(await read32(0, Reg.ERRORS), 1);
  assert.equal(await read32(0, Reg.COMPLETIONS), 0);
  await write32(0, Reg.STATUS, Status.ERROR);
  assert.equal(await read32(0, Reg.STATUS), 0, 'ERROR is write-1-to-clear');
});
