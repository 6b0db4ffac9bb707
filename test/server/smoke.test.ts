import t from 'tap';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { startServer } from '../../server/runtime.js';
import { VfioUserClient } from '../../testing/vfio-user-client.js';
import { Command } from '../../protocol/constants.js';
import { encodeDeviceGetInfoRequest, decodeDeviceGetInfoReply } from '../../protocol/commands/device-get-info.js';
import { encodeRegionReadRequest, decodeRegionReadReply } from '../../protocol/commands/region-access.js';

t.test('a client negotiates, reads device info and config space', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-'));
  const sock = path.join(dir, 'gpio.sock');
  const rt = await startServer({ devices: [{ name: 'gpio0', kind: 'gpio', socket: sock, options: {} }] });
  t.teardown(async () => { await rt.close(); fs.rmSync(dir, { recursive: true, force: true }); });
  const c = await VfioUserClient.open(sock);
  t.teardown(() => c.close());
  const info = await c.request(Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
  t.equal(info.errno, 0);
  const di = decodeDeviceGetInfoReply(info.payload);
  t.equal(di.numRegions, 9);
  const r = await c.request(Command.REGION_READ, encodeRegionReadRequest({ offset: 0, region: 7, count: 4 }));
  t.equal(r.errno, 0);
  const data = decodeRegionReadReply(r.payload, 4).data;
  t.equal(data.readUInt16LE(0), 0x494f);
  t.equal(data.readUInt16LE(2), 0x0dc8);
});
