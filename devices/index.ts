// The registry of built-in device kinds (`serve gpio`), each a
// DeviceDefinition kept next to its model; device modules loaded from the
// user's own files (`serve ./my-device.js`) take the same form (load.ts).
// Every model exposes `.device`, the VfioUserDevice the server serves, plus
// its own host-side API (e.g. Idio16.setInputs).
import type { DeviceContext, DeviceDefinition } from './definition.js';
import { DefinitionError, quietLogger } from './definition.js';
import { gpioDevice } from './gpio-idio16/definition.js';
import { rngDevice } from './virtio-rng/definition.js';
import { blkDevice } from './virtio-blk/definition.js';
import { nvmeDevice } from './nvme/definition.js';

const builtins = { gpio: gpioDevice, rng: rngDevice, blk: blkDevice, nvme: nvmeDevice };

type Builtins = typeof builtins;
/** The name of a built-in device kind. */
export type DeviceKind = keyof Builtins;
/** The options a built-in kind's model accepts (its schema's options plus in-process ones such as `fdOps`). */
export type DeviceOptions<K extends DeviceKind> = Parameters<Builtins[K]['create']>[0];
/** The model a built-in kind creates (e.g. Idio16 for 'gpio'). */
export type DeviceOf<K extends DeviceKind> = ReturnType<Builtins[K]['create']>;

/** True for the name of a built-in kind. */
export function isDeviceKind(kind: string): kind is DeviceKind {
  return Object.hasOwn(builtins, kind);
}

/** The built-in definitions, in the order `vfio-user-ts devices` lists them. */
export function deviceKinds(): DeviceDefinition[] {
  return Object.values(builtins);
}

/** The definition of a built-in kind; an unknown name throws a DefinitionError listing the known ones. */
export function builtinDevice(kind: string): DeviceDefinition {
  if (!isDeviceKind(kind)) {
    throw new DefinitionError(`unknown device kind '${kind}' (known: ${Object.keys(builtins).join(', ')}; a device module is a path like ./my-device.js)`);
  }
  return builtins[kind];
}

/** `createDevice('gpio', { inputs: 0xbeef })`: a built-in model straight from its factory, typed per kind. */
export function createDevice<K extends DeviceKind>(
  kind: K,
  options: DeviceOptions<K> = {} as DeviceOptions<K>,
  context: DeviceContext = { name: kind, log: quietLogger },
): DeviceOf<K> {
  const create = builtins[kind].create as (o: DeviceOptions<K>, c: DeviceContext) => DeviceOf<K>;
  return create(options, context);
}
