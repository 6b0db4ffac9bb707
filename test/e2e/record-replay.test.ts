// End to end: QEMU 11.1 boots the Debian guest against our virtio-blk served
// with --record; the guest writes 32 MiB and reads them back. The recording
// is then checked with the trace tools and replayed, without QEMU, against
// a fresh server with a fresh image: no divergence, and the image ends up
// byte-identical to the one the guest wrote. Replayed against an image that
// differs in sector 0 (read by the guest's partition scan before its dd
// writes it), the replay reports the divergence at the message that carried
// that sector and exits non-zero.
//
// Both servers run in deterministic mode: requests complete in the order
// they were made available, so the used ring does not depend on which I/O
// happened to finish first (without it about one shared-RAM run in ten
// diverged at two writes that finished in the other order).
//
// Two variants: private guest RAM (every DMA is a DMA_READ/DMA_WRITE message,
// so the messages are the whole story) and shared guest RAM recorded with
// --record-dma (the device's guest-memory accesses are recorded too).
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { provision } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot } from '../../qemu-configs/boot.js';
import { virtioBlkGuestScript } from '../../qemu-configs/guest-scripts/virtio.js';
import { startServer } from '../../server/runtime.js';
import { captureLog } from './server-log.js';
import { Command } from '../../protocol/constants.js';
import { readTrace } from '../../trace/reader.js';
import { isDma, isMessage } from '../../trace/format.js';
import { showLines } from '../../trace/show.js';
import { traceStats } from '../../trace/stats.js';
import { replayCommand } from '../../cli/replay-cli.js';

t.setTimeout(30 * 60 * 1000);

const MiB = 1 << 20;
const IMAGE_MIB = 64;
const PATTERN_MIB = 32;
const SEED = 7;

async function serveImage(dir: string, name: string, image: string, record?: { file: string; dma?: boolean }) {
  const socket = path.join(dir, `${name}.sock`);
  if (!fs.existsSync(image)) {
    fs.writeFileSync(image, '');
    fs.truncateSync(image, IMAGE_MIB * MiB);
  }
  const rt = await startServer({
    devices: [{ name: 'blk0', kind: 'blk', socket, options: { disk: image, size: IMAGE_MIB * MiB } }],
    deterministic: SEED,
    ...(record ? { record } : {}),
  });
  return { rt, socket };
}

/** Replays `file` against a fresh server on `image` through the CLI command; exit code and output. */
async function replayOn(dir: string, name: string, file: string, image: string): Promise<{ code: number; out: string }> {
  const { rt, socket } = await serveImage(dir, name, image);
  let out = '';
  try {
    const code = await replayCommand([file, '--socket', socket], { out: (s) => { out += s; }, err: (s) => { out += s; } });
    return { code, out };
  } finally {
    await rt.close();
  }
}

async function recordAndReplay(t: Test, memory: 'private' | 'shared'): Promise<void> {
  const p = await provision({ log: (m) => t.comment(`provision: ${m}`) });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vut-rr-e2e-${memory}-`));
  const { lines, restore } = captureLog(200);
  t.teardown(() => {
    restore();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const image = path.join(dir, 'orig.img');
  const file = path.join(dir, 'boot.vut');

  // 1. Record a real boot.
  const { rt, socket } = await serveImage(dir, 'orig', image, { file, dma: memory === 'shared' });
  let booted;
  try {
    booted = await bootGuest({
      provisioned: p,
      script: virtioBlkGuestScript({ mib: PATTERN_MIB }),
      vfioUserSockets: [socket],
      memory,
      timeoutMs: 8 * 60 * 1000,
    });
  } finally {
    await rt.close();
  }
  const res = booted.results;
  const why = () => `${describeBoot(booted)}\n--- server log ---\n${lines.join('\n')}`;
  t.ok(booted.done && booted.exitCode === 0, `the guest ran its script (${booted.accel})`, { why: booted.done ? undefined : why() });
  t.equal(res.match, 'yes', 'the guest read back its 32 MiB');
  t.match(res.write_status, /^0 /, 'the guest\'s dd write succeeded');
  const size = fs.statSync(file).size;
  t.comment(`${memory}: recording ${(size / MiB).toFixed(1)} MiB`);

  // 2. The trace tools on the real recording.
  const trace = readTrace(file);
  t.equal(trace.truncated, false, 'the recording is whole');
  const msgs = trace.records.filter(isMessage);
  const text = [...showLines(trace.records, { commands: ['VERSION'] })].join('\n');
  t.match(text, /C->S VERSION #\d+ major=0 minor=0 caps=\{.*"maxDataXferSize":1048576/, 'show: QEMU\'s VERSION, decoded (max_data_xfer_size 1 MiB)');
  t.match(text, /C->S VERSION #\d+ .*"maxDmaMaps":65535/, 'show: QEMU\'s VERSION, decoded (max_dma_maps 65535)');
  t.match(text, /S->C VERSION reply #\d+ major=0 minor=0 caps=/, 'show: our VERSION reply');
  const maps = [...showLines(trace.records, { commands: ['DMA_MAP'] })];
  t.ok(maps.some((l) => /C->S DMA_MAP #\d+ .*addr=0x[0-9a-f]+ size=0x[0-9a-f]+/.test(l)), 'show: QEMU\'s DMA_MAPs, decoded');
  const config = [...showLines(trace.records, { region: 7, commands: ['REGION_READ'] })];
  t.ok(config.some((l) => /S->C REGION_READ reply #\d+ offset=0 region=7 count=\d+ data=f41a4210/.test(l)), 'show: our vendor/device ID (1af4:1042) read from config space', { config: config.slice(0, 5) });
  const stats = traceStats(trace.records);
  t.equal(stats.commands.get('VERSION')?.fromClient, 1, 'stats: one VERSION');
  t.equal(stats.sessions, 1, 'stats: one session');
  t.ok((stats.commands.get('REGION_READ')?.latencyUs.length ?? 0) > 10, 'stats: REGION_READ latencies');
  t.ok(stats.maps.some((m) => m.live > 0), 'stats: live DMA mappings in the timeline');
  if (memory === 'private') {
    const dr = stats.commands.get('DMA_READ')!;
    const dw = stats.commands.get('DMA_WRITE')!;
    t.ok(dr.fromServer > 512 && dr.replies === dr.fromServer, `stats: our DMA_READs (${dr.fromServer}), all answered`);
    t.ok(dw.fromServer > 512 && dw.replies === dw.fromServer, `stats: our DMA_WRITEs (${dw.fromServer}), all answered`);
    t.ok(msgs.every((m) => !m.fds?.length || m.header.command !== Command.DMA_MAP), 'private RAM: no DMA_MAP carried an fd');
  } else {
    t.ok(msgs.some((m) => m.header.command === Command.DMA_MAP && m.fds?.[0]?.kind === 'memfd'), 'shared RAM: DMA_MAP carried QEMU\'s memfd');
    t.ok(stats.dma.readBytes >= PATTERN_MIB * MiB, `--record-dma: the device's guest-memory reads (${stats.dma.readBytes} bytes)`);
    t.ok(stats.dma.writeBytes >= PATTERN_MIB * MiB, `--record-dma: its guest-memory writes (${stats.dma.writeBytes} bytes)`);
    t.ok(trace.records.some(isDma), 'dma records present');
  }

  // 3. Replay against a fresh server with a fresh image.
  const freshImage = path.join(dir, 'fresh.img');
  const started = Date.now();
  const fresh = await replayOn(dir, 'fresh', file, freshImage);
  t.comment(`${memory}: replay took ${((Date.now() - started) / 1000).toFixed(1)} s: ${fresh.out.trim()}`);
  t.equal(fresh.code, 0, 'replay: exit 0');
  t.match(fresh.out, /; 0 divergences/, 'replay: 0 divergences');
  t.ok(fs.readFileSync(freshImage).equals(fs.readFileSync(image)), 'replay: the image is byte-identical to the recorded run\'s');

  // 4. Against an image that differs in sector 0, which the guest read before writing it.
  const changedImage = path.join(dir, 'changed.img');
  const b = Buffer.alloc(IMAGE_MIB * MiB);
  b[10] = 0x5a;
  fs.writeFileSync(changedImage, b);
  const changed = await replayOn(dir, 'changed', file, changedImage);
  t.comment(`${memory}: changed image: ${changed.out.trim()}`);
  t.equal(changed.code, 1, 'changed image: exit 1');
  if (memory === 'private') {
    t.match(changed.out, /DIVERGENCE at record \d+ .*\n {2}recorded: S->C DMA_WRITE #\d+ addr=0x[0-9a-f]+ count=\d+ data=/, 'at our DMA_WRITE of the sector');
  } else {
    t.match(changed.out, /DIVERGENCE at record \d+ .*guest memory.*\n {2}recorded: .*-- dma op=write/, 'at the device\'s recorded guest-memory write of the sector');
  }
  t.match(changed.out, /data \(\d+ vs \d+ bytes, first difference at byte 10\): recorded @6: 0{8}.*, replayed @6: 000000005a/, 'with the field diff: data, byte 10');
}

t.test('record a private-RAM boot, replay it without QEMU', (t) => recordAndReplay(t, 'private'));
t.test('record a shared-RAM boot with --record-dma, replay it without QEMU', (t) => recordAndReplay(t, 'shared'));
