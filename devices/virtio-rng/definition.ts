// The rng kind: how the CLI, config files and startServer build a VirtioRng.
import type { DeviceContext, DeviceDefinition } from '../definition.js';
import { VirtioRng, type VirtioRngOptions } from './rng.js';

/** virtio-rng entropy device (`serve rng`). */
export const rngDevice = {
  kind: 'rng',
  description: 'virtio-rng (1af4:1044): entropy from crypto.getRandomValues',
  guestDriver: 'virtio_rng',
  options: {
    queueSize: { type: 'u32', help: 'request queue size, a power of two', min: 1, max: 32768, unit: 'entries', default: 64 },
  },
  create: (options: VirtioRngOptions, context: DeviceContext) => new VirtioRng({ log: context.log, entropy: context.entropy, inOrder: context.deterministic, ...options }),
} satisfies DeviceDefinition;
