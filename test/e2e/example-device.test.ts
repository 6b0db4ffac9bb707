// End to end: the example out-of-tree device (examples/copy-engine) loaded as
// a user's module, served by our server, driven by the Debian guest under
// QEMU 11.1 with no driver for it: the guest reserves memory with memmap=,
// writes a pattern there with devmem, programs the device through BAR0 and
// checks the copy (DMA through the IOMMU model), the completion and error
// counters, and the interrupt by the PCI status register's Interrupt Status
// bit. Twice: shared guest RAM (DMA straight into the memfd) and private
// guest RAM (every DMA a DMA_READ/DMA_WRITE message to QEMU).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { provision } from '../../qemu-configs/provision.js';
import { bootGuest, describeBoot, NO_ERROR_RECOVERY } from '../../qemu-configs/boot.js';
import {
  copyEngineGuestScript,
  RESERVE_CMDLINE,
  RESERVED_BASE,
  type CopyEngineRegs,
  type CopyJob,
} from '../../qemu-configs/guest-scripts/copy-engine.js';
import { startServer } from '../../server/runtime.js';
import type { PciDevice } from '../../devices/pci/pci-device.js';

t.setTimeout(30 * 60 * 1000);

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const example = path.join(root, 'examples/copy-engine');

/** What the example module exports besides its definition. */
interface CopyEngineModule {
  Reg: CopyEngineRegs;
  Status: { BUSY: number; DONE: number; ERROR: number };
}

/** The model the example's create() returns. */
interface CopyEngine {
  device: PciDevice;
  readonly interrupts: number;
}

/**
 * The example as its user has it after `npm install` in its folder: its own
 * files next to node_modules/vfio-user-ts linked to this package (what npm
 * does for a "file:" dependency), in a folder of its own outside the repo.
 */
function installExample(dir: string): string {
  const app = path.join(dir, 'copy-engine');
  fs.mkdirSync(path.join(app, 'node_modules'), { recursive: true });
  for (const f of ['package.json', 'copy-engine.js', 'test.js']) fs.copyFileSync(path.join(example, f), path.join(app, f));
  fs.symlinkSync(root, path.join(app, 'node_modules/vfio-user-ts'), 'dir');
  return path.join(app, 'copy-engine.js');
}

// 300 words from 128 bytes before a page end into the next page, to a
// destination that also crosses a page: the copy spans mappings' pages.
const JOB: CopyJob = { src: RESERVED_BASE + 0x0f80, dst: RESERVED_BASE + 0x10_0f00, words: 300 };

t.test("the example's own test (vfio-user-ts/testing, no guest) passes where its user installed it", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-e2e-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const app = path.dirname(installExample(dir));
  const r = spawnSync(process.execPath, ['--test', 'test.js'], { cwd: app, encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, `node --test: ${r.stdout}${r.stderr}`);
  t.match(r.stdout, /^# pass 1$/m, 'its one test ran and passed');
});

for (const memory of ['shared', 'private'] as const) {
  t.test(`the copy engine example, no guest driver, ${memory} guest RAM`, async (t) => {
    const p = await provision({ log: (m) => t.comment(`provision: ${m}`) });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-e2e-'));
    const module = installExample(dir);
    const { Reg, Status } = (await import(module)) as CopyEngineModule;
    const socket = path.join(dir, 'ce.sock');
    const rt = await startServer({ devices: [{ name: 'ce0', kind: module, socket }] });
    t.teardown(async () => {
      await rt.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const model = rt.models.get('ce0') as unknown as CopyEngine;
    const ctx = rt.contexts.get('ce0')!;
    /** The backing kind of the IOAS area holding the copy's source, while QEMU's mappings are live. */
    let srcBacking = '(not sampled)';

    const r = await bootGuest({
      provisioned: p,
      script: copyEngineGuestScript(Reg, JOB),
      vfioUserSockets: [socket],
      extraCmdline: [RESERVE_CMDLINE],
      memory,
      timeoutMs: 5 * 60 * 1000,
      onLine: (l) => {
        if (!l.includes('@@RESULT copy_status=')) return;
        const src = BigInt(JOB.src);
        const area = ctx.compatIoas.list().find((a) => a.iova <= src && src < a.iova + BigInt(a.length));
        srcBacking = area ? String(area.backing.kind) : '(unmapped)';
      },
    });
    const res = r.results;
    t.ok(r.done, `the guest ran its script (${describeBoot(r)})`);
    t.equal(res.ids, '0x1234:0xc0de', 'the guest sees the example device');
    t.equal(res.driver, '', 'no driver is bound');
    t.match(res.reserved, /reserved/i, `memmap= reserved the window (${res.reserved})`);

    t.equal(Number(res.nobm_status), Status.ERROR, 'doorbell with bus mastering off: ERROR, no copy');
    t.equal(res.nobm_completions, '0');
    t.equal(res.nobm_errors, '1');
    t.equal(Number(res.command) & 0x6, 0x6, `memory and bus master enabled (command ${res.command})`);

    t.equal(Number(res.copy_status), Status.DONE, 'the copy finished without error');
    t.equal(res.copy_completions, '1', 'the completion counter counted it');
    t.equal(res.mismatches, '0', `all ${JOB.words} words arrived`);
    // Shared RAM comes as a memfd the server maps; private RAM is reached by DMA_READ/DMA_WRITE messages.
    t.equal(srcBacking, memory === 'shared' ? 'mmap' : 'message', `the source's IOAS area is ${srcBacking}-backed`);
    t.equal(res.guard, '0x5a5a5a5a', 'the word after the copy is untouched');

    t.equal(res.intx_before, '0', 'Interrupt Status clear before the copy');
    t.equal(res.intx_raised, '1', 'Interrupt Status set by the completion (INTx asserted)');
    t.equal(res.intx_acked, '0', 'Interrupt Status clear after the guest acknowledged');
    t.equal(res.acked_status, '0');
    t.comment(`/proc/interrupts without a driver: ${res.irq_line}`);
    t.ok(model.interrupts >= 1, `the server asserted INTx towards QEMU (${model.interrupts} times)`);

    t.equal(Number(res.bad_status), Status.ERROR, 'a source IOVA nothing is mapped at: ERROR');
    t.equal(res.bad_completions, '1', 'no completion counted for the fault');
    t.equal(res.bad_errors, '2');
    t.equal(res.intx_fault, '1', 'the fault raised INTx too');

    t.equal(rt.host('ce0').connections, 1, 'QEMU connected once');
    t.notOk(r.stderr.includes(NO_ERROR_RECOVERY), `QEMU enabled error recovery; stderr: ${r.stderr.trim() || '(empty)'}`);
  });
}
