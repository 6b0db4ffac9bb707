// Device registry: a kind name (as on the command line, `serve gpio`) → a
// factory. Every model exposes `.device`, the VfioUserDevice the server
// serves, plus its own host-side API (e.g. Idio16.setInputs).
import type { VfioUserDevice } from './device.js';
import { Idio16, type Idio16Options } from './gpio-idio16/index.js';
import { VirtioRng, type VirtioRngOptions } from './virtio-rng/index.js';
import { VirtioBlk, type VirtioBlkOptions } from './virtio-blk/index.js';

export interface DeviceModel {
  readonly kind: string;
  readonly device: VfioUserDevice;
}

interface Entry<O, M extends DeviceModel> {
  description: string;
  create(options?: O): M;
}

const registry = {
  gpio: {
    description: 'ACCES PCI-IDIO-16 (494f:0dc8): 16 outputs, 16 inputs, INTx on input change',
    create: (options?: Idio16Options) => new Idio16(options),
  } satisfies Entry<Idio16Options, Idio16>,
  rng: {
    description: 'virtio-rng (1af4:1044): entropy from crypto.getRandomValues',
    create: (options?: VirtioRngOptions) => new VirtioRng(options),
  } satisfies Entry<VirtioRngOptions, VirtioRng>,
  blk: {
    description: 'virtio-blk (1af4:1042) on a raw image file: read/write/flush/discard/write-zeroes, multiqueue',
    create: (options?: VirtioBlkOptions) => new VirtioBlk(options as VirtioBlkOptions),
  } satisfies Entry<VirtioBlkOptions, VirtioBlk>,
};

type Registry = typeof registry;
export type DeviceKind = keyof Registry;
export type DeviceOptions<K extends DeviceKind> = Parameters<Registry[K]['create']>[0];
export type DeviceOf<K extends DeviceKind> = ReturnType<Registry[K]['create']>;

export function isDeviceKind(kind: string): kind is DeviceKind {
  return Object.hasOwn(registry, kind);
}

/** Known kinds with a one-line description each. */
export function deviceKinds(): { kind: DeviceKind; description: string }[] {
  return (Object.keys(registry) as DeviceKind[]).map((kind) => ({
    kind,
    description: registry[kind].description,
  }));
}

/** `createDevice('gpio', { inputs: 0xbeef })`, typed per kind. */
export function createDevice<K extends DeviceKind>(kind: K, options?: DeviceOptions<K>): DeviceOf<K> {
  return createDeviceByName(kind, options) as DeviceOf<K>;
}

/** For names from the command line or a config file; throws on an unknown kind. */
export function createDeviceByName(kind: string, options?: object): DeviceModel {
  if (!isDeviceKind(kind)) {
    throw new Error(`unknown device kind '${kind}' (known: ${Object.keys(registry).join(', ')})`);
  }
  return registry[kind].create(options as never);
}

export { Idio16, type Idio16Options };
export { VirtioRng, type VirtioRngOptions };
export { VirtioBlk, type VirtioBlkOptions };
