// VFIO_USER_DEVICE_RESET (client → server): reset the device. Neither the
// request nor the reply has a payload. It may take long: the session must
// keep reading (and serving other requests' replies) meanwhile.
import type { NegotiatedLimits } from '../limits.js';
import { exactLength, noFds } from '../wire.js';

export function decodeDeviceResetRequest(payload: Buffer, _limits: NegotiatedLimits, nfds: number): void {
  exactLength(payload, 0, 'DEVICE_RESET');
  noFds(nfds, 'DEVICE_RESET');
}

/** Client side (test client). */
export function encodeDeviceResetRequest(): Buffer {
  return Buffer.alloc(0);
}
