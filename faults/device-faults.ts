// One device's view of the fault rules: the rules that apply to it, split by
// fault point so that each point's "any rule?" check is one array length,
// and the questions the session, the DMA door and the device ask. A fault
// that fires is counted (on its rule) and reported to the injector, which
// logs it and tells its listeners.
import type { Header } from '../protocol/header.js';
import { commandName } from '../protocol/constants.js';
import type { BlockIo, DeviceFaultHooks, InjectedBlockStatus, InjectedIrq } from '../devices/fault-hooks.js';
import type { ArmedRule } from './armed-rule.js';
import { matchesBlock, matchesDma, matchesIrq, matchesMessage } from './match.js';
import type { FaultEvent } from './events.js';

/** What DeviceFaults needs from the injector that owns it. */
export interface FaultSink {
  now(): number;
  report(event: FaultEvent): void;
}

interface Hold { rule: string; release: () => void }

export class DeviceFaults implements DeviceFaultHooks {
  /** Rules by point, in the order they were added (the first that fires wins). */
  message: ArmedRule[] = [];
  dma: ArmedRule[] = [];
  block: ArmedRule[] = [];
  irq: ArmedRule[] = [];
  /** The connection number of the current (or last) client, for events. */
  session = 0;
  /** Called after the rules change (the session's native reads must stop for a message rule). */
  rulesChanged: (() => void) | null = null;
  private readonly holds = new Set<Hold>();

  constructor(readonly device: string, private readonly sink: FaultSink) {}

  /** The rule that fires on this request (header and payload as received), if any. */
  onMessage(h: Header, payload: Buffer, expectsReply: boolean): ArmedRule | undefined {
    for (const r of this.message) {
      // A reply that will not be sent cannot be corrupted (a posted write can
      // still be delayed or held: the requests behind it wait).
      if (!expectsReply && r.rule.action.type === 'corrupt') continue;
      if (matchesMessage(r.rule.match, h.command, payload) && r.fire(this.sink.now())) {
        this.fired(r, { command: commandName(h.command), msgId: h.msgId });
        return r;
      }
    }
    return undefined;
  }

  /** The rule that fails this DMA, if any (`access`: DMA_ACCESS_READ/WRITE bits). */
  dmaFault(iova: bigint, length: number, access: number): ArmedRule | undefined {
    for (const r of this.dma) {
      if (matchesDma(r.rule.match, iova, length, access) && r.fire(this.sink.now())) {
        this.fired(r, { iova: `0x${iova.toString(16)}`, length, access });
        return r;
      }
    }
    return undefined;
  }

  blockStatus(io: BlockIo): InjectedBlockStatus | undefined {
    for (const r of this.block) {
      const a = r.rule.action;
      if (!matchesBlock(r.rule.match, io) || !r.fire(this.sink.now())) continue;
      this.fired(r, { op: io.op, lba: Number(io.lba), count: io.count });
      if (a.type === 'nvme-status') return { kind: 'nvme', sct: a.sct, sc: a.sc };
      return { kind: a.type === 'blk-status' && a.status === 'unsupp' ? 'unsupp' : 'ioerr' };
    }
    return undefined;
  }

  interrupt(index: number, vector: number): InjectedIrq | undefined {
    for (const r of this.irq) {
      const a = r.rule.action;
      if (!matchesIrq(r.rule.match, index, vector) || !r.fire(this.sink.now())) continue;
      this.fired(r, { irq: index, vector });
      return a.type === 'irq-delay' ? { kind: 'delay', delayMs: a.ms } : { kind: 'lose' };
    }
    return undefined;
  }

  /** Settles when the hold is released (fault.release, fault.clear, the client leaving) or after `ms`. */
  hold(rule: string, ms?: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const h: Hold = {
        rule,
        release: () => {
          if (timer !== undefined) clearTimeout(timer);
          this.holds.delete(h);
          resolve();
        },
      };
      this.holds.add(h);
      if (ms !== undefined) timer = setTimeout(h.release, ms).unref();
    });
  }

  /** Releases the holds of rule `id` (all when absent); returns how many. */
  release(id?: string): number {
    let n = 0;
    for (const h of [...this.holds]) {
      if (id !== undefined && h.rule !== id) continue;
      h.release();
      n++;
    }
    return n;
  }

  private fired(r: ArmedRule, detail: Partial<FaultEvent>): void {
    this.sink.report({
      type: 'fault', rule: r.rule.id, action: r.rule.action.type, device: this.device, session: this.session, ...detail,
    });
  }
}
