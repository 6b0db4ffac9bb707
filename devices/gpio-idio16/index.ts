export { Idio16, type Idio16Options } from './idio16.js';
export { Idio16Reg, Idio16Status, IDIO16_BAR, IDIO16_DEVICE, IDIO16_VENDOR } from './registers.js';
