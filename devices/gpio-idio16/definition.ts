// The gpio kind: how the CLI, config files and startServer build an Idio16.
import type { DeviceContext, DeviceDefinition } from '../definition.js';
import { Idio16, type Idio16Options } from './idio16.js';

/** ACCES PCI-IDIO-16 GPIO card (`serve gpio`). */
export const gpioDevice = {
  kind: 'gpio',
  description: 'ACCES PCI-IDIO-16 (494f:0dc8): 16 outputs, 16 inputs, INTx on input change',
  guestDriver: 'gpio-pci-idio-16',
  options: {
    inputs: { type: 'u32', flag: 'input', help: 'initial input lines, e.g. 0xBEEF (bit n = IIN n)', max: 0xffff, hex: true, default: 0 },
  },
  create: (options: Idio16Options, context: DeviceContext) => new Idio16({ log: context.log, ...options }),
} satisfies DeviceDefinition;
