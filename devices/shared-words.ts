// The little-endian words a driver and a device both write in guest memory
// (virtqueue indexes and event fields, NVMe shadow doorbells and EventIdx),
// read and written with one access of the word's width. The other side
// stores such a word with one instruction; two byte loads could see the low
// byte of one value and the high byte of the next (a ring index going from
// 0x12ff to 0x1300 read as 0x13ff is a whole ring of buffers that do not
// exist), and two byte stores could be read half-done the same way. An
// unaligned view (which no ring or doorbell of a conforming driver has)
// falls back to bytes.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The u16 at the start of `v` (at least 2 bytes), in one load when aligned. */
export function loadU16(v: Uint8Array): number {
  if (LITTLE_ENDIAN && (v.byteOffset & 1) === 0) return Atomics.load(new Uint16Array(v.buffer, v.byteOffset, 1), 0);
  return v[0]! | (v[1]! << 8);
}

/** The u32 at the start of `v` (at least 4 bytes), in one load when aligned. */
export function loadU32(v: Uint8Array): number {
  if (LITTLE_ENDIAN && (v.byteOffset & 3) === 0) return Atomics.load(new Uint32Array(v.buffer, v.byteOffset, 1), 0);
  return (v[0]! | (v[1]! << 8) | (v[2]! << 16) | (v[3]! << 24)) >>> 0;
}

/** Store a u16 at the start of `v` (at least 2 bytes), in one store when aligned (with a full fence). */
export function storeU16(v: Uint8Array, value: number): void {
  if (LITTLE_ENDIAN && (v.byteOffset & 1) === 0) {
    Atomics.store(new Uint16Array(v.buffer, v.byteOffset, 1), 0, value);
    return;
  }
  v[0] = value;
  v[1] = value >>> 8;
}

/** Store a u32 at the start of `v` (at least 4 bytes), in one store when aligned (with a full fence). */
export function storeU32(v: Uint8Array, value: number): void {
  if (LITTLE_ENDIAN && (v.byteOffset & 3) === 0) {
    Atomics.store(new Uint32Array(v.buffer, v.byteOffset, 1), 0, value);
    return;
  }
  v[0] = value;
  v[1] = value >>> 8;
  v[2] = value >>> 16;
  v[3] = value >>> 24;
}
