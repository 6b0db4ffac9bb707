// Fixtures for the fault tests (not a test file): a GPIO server with a fault
// injector (and optionally a control socket) on a temp-dir socket, in the
// shape of the conformance fixture so its probes and assertions apply.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { startServer } from '../../server/runtime.js';
import type { FaultInjector } from '../../faults/injector.js';
import type { Idio16 } from '../../devices/gpio-idio16/idio16.js';
import { DEVICE, type Fixture } from '../conformance/helpers.js';

export interface FaultFixture extends Fixture {
  faults: FaultInjector;
  /** The control socket's path, when asked for. */
  control?: string;
}

/** A GPIO server with a fault injector; `rules` are in force from the start. */
export async function startGpioWithFaults(t: Test, opts: { rules?: unknown[]; control?: boolean } = {}): Promise<FaultFixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-faults-'));
  const sock = path.join(dir, `${DEVICE}.sock`);
  const control = opts.control ? path.join(dir, 'ctl.sock') : undefined;
  const rt = await startServer({
    devices: [{ name: DEVICE, kind: 'gpio', socket: sock, options: {} }],
    faults: opts.rules ?? [],
    ...(control && { control }),
  });
  const host = rt.host(DEVICE);
  const fx: FaultFixture = {
    dir, sock, rt, host,
    model: rt.models.get(DEVICE) as unknown as Idio16,
    ctx: rt.contexts.get(DEVICE)!,
    disconnects: 0,
    faults: rt.faults!,
    control,
  };
  host.on('disconnect', () => { fx.disconnects++; });
  t.teardown(async () => {
    await rt.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return fx;
}

/** matched/injected of rule `id` as fault.list reports them. */
export function counts(f: FaultInjector, id: string): { matched: number; injected: number } {
  const r = f.list().rules.find((x) => x.rule.id === id);
  if (!r) throw new Error(`no rule '${id}'`);
  return { matched: r.matched, injected: r.injected };
}
