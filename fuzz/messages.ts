// Requests of every client→server command, built valid with the protocol's
// client-side encoders and then, often, mutated: fields set to boundary
// values, argsz and payload length disagreeing, header flags and command
// changed, fds added of the wrong kind or number, and (rarely) msg_size not
// matching the bytes, which breaks the stream's framing on purpose.
import { Command, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
  VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_USER_F_ERROR, VFIO_USER_F_NO_REPLY,
  VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, MAX_MSG_FDS_LIMIT,
} from '../protocol/constants.js';
// Every message stays within CONTROL_PAYLOAD_MAX: the smallest msg_size limit any negotiation leaves.
import { CONTROL_PAYLOAD_MAX, HEADER_SIZE, putU16At, putU32At } from '../protocol/header.js';
import { encodeVersionRequest, type VersionCaps } from '../protocol/version.js';
import { encodeDmaMapRequest } from '../protocol/commands/dma-map.js';
import { encodeDmaUnmapRequest } from '../protocol/commands/dma-unmap.js';
import { encodeDeviceGetInfoRequest } from '../protocol/commands/device-get-info.js';
import { encodeRegionInfoRequest } from '../protocol/commands/region-info.js';
import { encodeRegionIoFdsRequest } from '../protocol/commands/region-io-fds.js';
import { encodeIrqInfoRequest } from '../protocol/commands/irq-info.js';
import { encodeSetIrqsRequest } from '../protocol/commands/set-irqs.js';
import { encodeRegionReadRequest, encodeRegionWriteRequest } from '../protocol/commands/region-access.js';
import { encodeDmaReadRequest, encodeDmaWriteRequest } from '../protocol/commands/dma-access.js';
import { encodeDeviceResetRequest } from '../protocol/commands/device-reset.js';
import { encodeRegionWriteMultiRequest } from '../protocol/commands/region-write-multi.js';
import { encodeDeviceFeatureRequest } from '../protocol/commands/device-feature.js';
import { encodeMigDataReadRequest, encodeMigDataWriteRequest } from '../protocol/commands/mig-data.js';
import { DEFAULT_LIMITS } from '../protocol/limits.js';
import { describe, frame, type FuzzMessage } from './frame.js';
import type { FdMaker } from './fds.js';
import type { Prng } from './prng.js';

/** The capabilities QEMU 11.1 offers. */
export const QEMU_CAPS: VersionCaps = {
  maxMsgFds: 16, maxDataXferSize: 1 << 20, pgsizes: 4096, maxDmaMaps: 65535, writeMultiple: true,
};

/** A valid payload for a command, and the fds that go with it. */
interface Built { payload: Buffer; fds: number[] }

const PAGE = 4096;
/** Region offsets worth trying: register starts, virtio BAR4 areas, ends. */
const OFFSETS = [0, 1, 2, 3, 4, 6, 8, 0xc, 0x10, 0x14, 0x16, 0x18, 0x1c, 0x20, 0x34, 0x40, 0xff, 0x100, 0xffc, 0x1000,
  0x2000, 0x3000, 0x3ffc, 0x4000, 0x800];
const SIZES = [0, 1, 2, 3, 4, 8, 16, 64, 256, 4096];

export class MessageFactory {
  private nextId = 1;

  constructor(private readonly rng: Prng, private readonly fds: FdMaker) {}

  /** A fresh msg_id (sequential, sometimes random: ids may repeat). */
  id(): number {
    if (this.rng.chance(0.02)) return this.rng.below(0x10000);
    const id = this.nextId;
    this.nextId = (this.nextId + 1) & 0xffff;
    return id;
  }

  /** A valid, unmutated message. */
  valid(command: number, payload: Buffer, fds: number[] = [], flags = 0): FuzzMessage {
    return describe(frame(this.id(), command, payload, flags), fds, commandLabel(command));
  }

  /** VERSION as QEMU sends it. */
  version(): FuzzMessage {
    return this.valid(Command.VERSION, encodeVersionRequest(QEMU_CAPS));
  }

  /** DEVICE_GET_INFO: the liveness probe. */
  probe(): FuzzMessage {
    return this.valid(Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest());
  }

  /** Any command, valid or mutated. */
  random(): FuzzMessage {
    const command = this.rng.chance(0.03) ? this.rng.pick([0, 19, 20, 0x7fff, 0xffff]) : this.rng.range(1, 18);
    const built = this.build(command);
    if (this.rng.chance(0.45)) return this.valid(command, built.payload, built.fds);
    return this.mutate(command, built);
  }

  private mutate(command: number, b: Built): FuzzMessage {
    let payload = b.payload;
    let fds = b.fds;
    let flags = 0;
    let cmd = command;
    const n = this.rng.range(1, 3);
    for (let i = 0; i < n; i++) {
      switch (this.rng.below(9)) {
        case 0: case 1: // a u32 field at an aligned or misaligned offset
          if (payload.length >= 4) putU32At(payload, this.rng.below(payload.length - 3), this.rng.u32Field());
          break;
        case 2: // a u64 field
          if (payload.length >= 8) payload.writeBigUInt64LE(this.rng.u64Field(), 8 * this.rng.below(payload.length >> 3));
          break;
        case 3: // argsz (the first u32 of most payloads)
          if (payload.length >= 4) putU32At(payload, 0, this.rng.u32Field());
          break;
        case 4: // payload shorter or longer than the command's layout
          payload = this.rng.chance(0.5)
            ? payload.subarray(0, this.rng.below(payload.length + 1))
            : Buffer.concat([payload, this.rng.bytes(this.rng.pick([1, 3, 4, 8, 16, 100, 4096]))]).subarray(0, CONTROL_PAYLOAD_MAX);
          break;
        case 5: // header flags
          flags = this.rng.pick([VFIO_USER_F_NO_REPLY, VFIO_USER_F_ERROR, 1, 2, 0xf, 0x40, 0x80000000, this.rng.u32()]);
          break;
        case 6: // the command number
          cmd = this.rng.chance(0.5) ? this.rng.range(0, 20) : this.rng.u32Field() & 0xffff;
          break;
        case 7: // fds: none, some of any kind, the most allowed
          for (const fd of fds) this.fds.release(fd);
          fds = this.fds.many(this.rng.pick([0, 1, 1, 2, 3, MAX_MSG_FDS_LIMIT]));
          break;
        case 8: // a byte flipped
          if (payload.length > 0) payload[this.rng.below(payload.length)] ^= 1 << this.rng.below(8);
          break;
      }
    }
    const bytes = frame(this.id(), cmd, payload, flags);
    if (this.rng.chance(0.01)) return this.breakFraming(bytes, fds);
    return describe(bytes, fds, commandLabel(cmd));
  }

  /** msg_size that is not the real length, or more fds than negotiated: the server may drop us. */
  private breakFraming(bytes: Buffer, fds: number[]): FuzzMessage {
    switch (this.rng.below(4)) {
      case 0: putU32At(bytes, 4, this.rng.below(HEADER_SIZE)); break;
      case 1: putU32At(bytes, 4, this.rng.u32Field()); break;
      case 2: putU32At(bytes, 4, bytes.length + this.rng.range(1, 64)); break;
      default:
        for (const fd of fds) this.fds.release(fd);
        fds = this.fds.many(MAX_MSG_FDS_LIMIT + this.rng.range(1, 8));
    }
    const m = describe(bytes, fds, 'raw');
    m.desync = true;
    m.reply = false;
    return m;
  }

  /** Garbage bytes with a header-shaped start. */
  garbage(): FuzzMessage {
    const bytes = this.rng.bytes(this.rng.range(1, 64));
    if (bytes.length >= 8 && this.rng.chance(0.5)) putU16At(bytes, 2, this.rng.range(1, 18));
    const m = describe(bytes.length >= HEADER_SIZE ? bytes : Buffer.concat([bytes, Buffer.alloc(HEADER_SIZE - bytes.length)]), [], 'raw');
    m.bytes = bytes;
    m.desync = true;
    m.reply = false;
    return m;
  }

  private region(): number {
    return this.rng.chance(0.9) ? this.rng.below(10) : this.rng.u32Field();
  }

  private offset(): number {
    return this.rng.chance(0.8) ? this.rng.pick(OFFSETS) + (this.rng.chance(0.2) ? this.rng.below(8) : 0) : this.rng.below(0x5000);
  }

  private count(): number {
    return this.rng.chance(0.7) ? this.rng.pick([1, 2, 4, 8]) : this.rng.pick(SIZES);
  }

  private iova(): bigint {
    return this.rng.chance(0.7) ? BigInt(this.rng.below(0x10000) * PAGE) : this.rng.u64Field();
  }

  private build(command: number): Built {
    const r = this.rng;
    const none: number[] = [];
    switch (command) {
      case Command.VERSION: {
        if (r.chance(0.3)) return { payload: encodeVersionRequest(null, r.range(0, 1), r.range(0, 2)), fds: none };
        const caps: VersionCaps = {};
        if (r.chance(0.7)) caps.maxMsgFds = r.pick([0, 1, 16, 17, 253, r.u32Field()]);
        if (r.chance(0.7)) caps.maxDataXferSize = r.pick([0, 4095, 4096, 1 << 20, 64 << 20, r.u32Field()]);
        if (r.chance(0.5)) caps.pgsizes = r.pick([0, 1, 4096, 0x1000 | 0x200000, r.u32Field()]);
        if (r.chance(0.5)) caps.maxDmaMaps = r.pick([0, 1, 65535, r.u32Field()]);
        if (r.chance(0.5)) caps.writeMultiple = r.chance(0.5);
        if (r.chance(0.1)) caps.migration = { pgsize: r.u32Field(), max_bitmap_size: r.u32Field() };
        const p = encodeVersionRequest(caps);
        if (r.chance(0.1)) return { payload: Buffer.concat([p.subarray(0, 4), Buffer.from(this.junkJson())]), fds: none };
        return { payload: p, fds: none };
      }
      case Command.DMA_MAP: {
        const size = r.chance(0.7) ? BigInt(r.range(1, 16) * PAGE) : r.u64Field();
        const withFd = r.chance(0.6);
        const fds = withFd ? [this.fds.make(r.chance(0.7) ? 'memfd' : undefined)] : none;
        const offset = r.chance(0.8) ? 0n : r.u64Field();
        const flags = r.chance(0.8) ? 3 : r.u32Field();
        return { payload: encodeDmaMapRequest({ addr: this.iova(), size, offset, flags }), fds };
      }
      case Command.DMA_UNMAP: {
        const flags = r.pick([0, 0, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, r.u32Field()]);
        const size = r.chance(0.7) ? BigInt(r.range(1, 16) * PAGE) : r.u64Field();
        const bitmap = flags === VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP ? { pgsize: 4096n, size: r.pick([0, 1, 8, 64]) } : undefined;
        const addr = flags === VFIO_DMA_UNMAP_FLAG_ALL ? 0n : this.iova();
        return { payload: encodeDmaUnmapRequest({ addr, size: flags === VFIO_DMA_UNMAP_FLAG_ALL ? 0n : size, flags, ...(bitmap ? { bitmap } : {}) }), fds: none };
      }
      case Command.DEVICE_GET_INFO:
        return { payload: encodeDeviceGetInfoRequest(r.chance(0.8) ? 16 : r.u32Field()), fds: none };
      case Command.DEVICE_GET_REGION_INFO:
        return { payload: encodeRegionInfoRequest(this.region(), r.pick([32, 32, 40, 64, 80, 4096, r.u32Field()])), fds: none };
      case Command.DEVICE_GET_REGION_IO_FDS:
        return { payload: encodeRegionIoFdsRequest(this.region(), r.pick([16, 56, 4096, r.u32Field()])), fds: none };
      case Command.DEVICE_GET_IRQ_INFO:
        return { payload: encodeIrqInfoRequest(r.chance(0.9) ? r.below(6) : r.u32Field(), r.chance(0.8) ? 16 : r.u32Field()), fds: none };
      case Command.DEVICE_SET_IRQS: {
        const data = r.pick([VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD]);
        const action = r.pick([VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_ACTION_TRIGGER]);
        const index = r.chance(0.9) ? r.below(5) : r.u32Field();
        const start = r.chance(0.8) ? r.below(4) : r.u32Field();
        const count = r.chance(0.85) ? r.below(5) : r.u32Field();
        const small = Math.min(count, 64);
        const bools = data === VFIO_IRQ_SET_DATA_BOOL ? r.bytes(small) : undefined;
        const fds = data === VFIO_IRQ_SET_DATA_EVENTFD && r.chance(0.8)
          ? this.fds.many(Math.min(small, MAX_MSG_FDS_LIMIT), r.chance(0.8) ? 'eventfd' : undefined) : none;
        return { payload: encodeSetIrqsRequest({ flags: data | action, index, start, count, ...(bools ? { bools } : {}) }), fds };
      }
      case Command.REGION_READ:
        return { payload: encodeRegionReadRequest({ offset: this.offset(), region: this.region(), count: this.count() }), fds: none };
      case Command.REGION_WRITE: {
        const data = r.bytes(this.count());
        return { payload: encodeRegionWriteRequest({ offset: this.offset(), region: this.region(), data }), fds: none };
      }
      case Command.DMA_READ:
        return { payload: encodeDmaReadRequest(BigInt(r.below(0x10000) * PAGE), this.count(), DEFAULT_LIMITS), fds: none };
      case Command.DMA_WRITE:
        return { payload: Buffer.concat(encodeDmaWriteRequest(BigInt(r.below(0x10000) * PAGE), r.bytes(this.count()), DEFAULT_LIMITS)), fds: none };
      case Command.DEVICE_RESET:
        return { payload: encodeDeviceResetRequest(), fds: none };
      case Command.DIRTY_PAGES: // nothing serves it: any bytes must get an error reply
        return { payload: r.bytes(r.pick([8, 40])), fds: none };
      case Command.REGION_WRITE_MULTI: {
        const n = r.chance(0.9) ? r.range(0, 8) : r.pick([199, 200]);
        const writes = Array.from({ length: n }, () => ({ offset: this.offset(), region: this.region(), data: r.bytes(r.pick([1, 2, 4, 8])) }));
        return { payload: encodeRegionWriteMultiRequest(writes), fds: none };
      }
      case Command.DEVICE_FEATURE: {
        const ops = r.pick([VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_PROBE,
          VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE, r.u32Field() & 0x70000]);
        const feature = r.chance(0.8) ? r.pick([0, 1, 2, 3, 6, 7, 8, 9]) : r.u32Field() & 0xffff;
        const data = r.chance(0.5) ? r.bytes(r.pick([4, 8, 16, 24, 40])) : undefined;
        const argsz = r.chance(0.5) ? undefined : r.pick([8, 12, 16, 24, 32, 64, r.u32Field()]);
        return { payload: encodeDeviceFeatureRequest({ feature, ops, ...(data ? { data } : {}), ...(argsz !== undefined ? { argsz } : {}) }), fds: none };
      }
      case Command.MIG_DATA_READ:
        return { payload: encodeMigDataReadRequest(this.count(), r.chance(0.7) ? undefined : r.u32Field()), fds: none };
      case Command.MIG_DATA_WRITE:
        return { payload: encodeMigDataWriteRequest(r.bytes(this.count()), r.chance(0.7) ? undefined : r.u32Field()), fds: none };
      default:
        return { payload: r.bytes(r.pick([0, 4, 8, 16, 32])), fds: none };
    }
  }

  private junkJson(): string {
    return this.rng.pick([
      '{', '[]', '"x"', '{"capabilities":[]}', '{"capabilities":{"max_msg_fds":-1}}',
      '{"capabilities":{"max_data_xfer_size":1e300}}', '{"capabilities":{"pgsizes":"4096"}}',
      '{"capabilities":{"migration":{"pgsize":null}}}', `{"capabilities":${'['.repeat(200)}}`,
      '{"capabilities":{"write_multiple":1,"twin_socket":{"supported":true}}}', '\u0000\u0000', '',
    ]);
  }
}

/** The counting bucket of a command number. */
export function commandLabel(command: number): string {
  for (const [name, id] of Object.entries(Command)) if (id === command) return name;
  return 'unknown';
}
