export { VirtioRng, type VirtioRngOptions } from './rng.js';
