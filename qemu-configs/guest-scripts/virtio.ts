// The guest side of the virtio checks, shared by the e2e tests and the
// virtio-blk benchmark. Devices are found through the virtio bus
// (/sys/bus/virtio/devices/virtioN/device = the virtio device type), so the
// same scripts work against our devices over vfio-user and against QEMU's
// built-in virtio-*-pci (which is how they were first checked). A script may
// pin a device to a PCI address (e.g. 0000:00:08.0) when the guest has more
// than one of a type, as the benchmark does. The block-device work itself
// (pattern round trip, timed dd rounds) is block.ts's.
import { MARK, TIMING_HELPERS, checkMiB, checkPci, patternRoundTrip } from './block.js';

export { MARK };

/** virtio device types (virtio 1.x, 5 "Device Types"). */
export const VIRTIO_ID_BLOCK = 2;
export const VIRTIO_ID_RNG = 4;

function hex4(v: number): string {
  return `0x${v.toString(16).padStart(4, '0')}`;
}

/**
 * Shell helpers (with block.ts's TIMING_HELPERS: up, elapsed):
 *   virtio_find TYPE [PCI]  the first /sys/bus/virtio/devices/virtioN of TYPE (0x0002),
 *                           optionally the one whose PCI parent is PCI; waits up to 10 s
 *   virtio_report PREFIX V  results PREFIX_ids, _pci, _pci_driver, _driver, _features,
 *                           _iommu_domain (when the device is behind an IOMMU)
 */
export const VIRTIO_HELPERS = `${TIMING_HELPERS}
virtio_find() {
  tries=0
  while [ $tries -lt 100 ]; do
    for v in /sys/bus/virtio/devices/*; do
      [ -e "$v/device" ] || continue
      [ "$(cat $v/device)" = "$1" ] || continue
      p=$(basename "$(dirname "$(readlink -f $v)")")
      [ -z "$2" ] || [ "$p" = "$2" ] || continue
      echo "$v"
      return 0
    done
    sleep 0.1
    tries=$((tries + 1))
  done
  return 1
}
virtio_report() {
  pd=$(dirname "$(readlink -f $2)")
  result $1_pci "$(basename $pd)"
  result $1_ids "$(cat $pd/vendor):$(cat $pd/device)"
  result $1_pci_driver "$(basename "$(readlink $pd/driver)")"
  result $1_driver "$(basename "$(readlink $2/driver)")"
  result $1_features "$(cat $2/features)"
  if [ -e $pd/iommu_group ]; then
    result $1_iommu_domain "$(cat $pd/iommu_group/type 2>/dev/null || echo unknown)"
  fi
}
`;

export interface RngScriptOptions {
  /** Bytes to read from /dev/hwrng (default 64 KiB). */
  bytes?: number;
  /** PCI address of the virtio-rng device to report (default: the first). */
  pci?: string;
}

/**
 * virtio-rng: the current hwrng (expected `virtio_rng.N`), then `bytes` read from
 * /dev/hwrng. Results: rng_current, rng_available, rng_* (device), read_status,
 * read_bytes, read_s, distinct (byte values seen, 1..256), first_bytes (hex of 16),
 * md5.
 */
export function virtioRngGuestScript(o: RngScriptOptions = {}): string {
  const bytes = o.bytes ?? 65536;
  if (!Number.isInteger(bytes) || bytes < 1 || bytes % 1024 !== 0 || bytes > 16 << 20) {
    throw new RangeError(`bytes ${bytes}: want a multiple of 1024 up to 16 MiB`);
  }
  const pci = checkPci(o.pci);
  return `${VIRTIO_HELPERS}
v=$(virtio_find ${hex4(VIRTIO_ID_RNG)} "${pci}") || { result error "no virtio-rng device on the virtio bus"; ls -l /sys/bus/virtio/devices/; exit 1; }
virtio_report rng $v
hw=/sys/class/misc/hw_random
[ -d $hw ] || hw=/sys/devices/virtual/misc/hw_random
result rng_current "$(cat $hw/rng_current 2>/dev/null)"
result rng_available "$(cat $hw/rng_available 2>/dev/null)"
t0=$EPOCHREALTIME
dd if=/dev/hwrng of=/tmp/rng bs=1024 count=${bytes / 1024} iflag=fullblock 2>/tmp/dd.err
st=$?
result read_status "$st $(tail -n 1 /tmp/dd.err)"
t1=$EPOCHREALTIME
result read_s "$(elapsed $t0 $t1)"
result read_bytes "$(wc -c < /tmp/rng)"
result distinct "$(hexdump -v -e '1/1 "%02x\\n"' /tmp/rng | sort -u | wc -l)"
result first_bytes "$(hexdump -v -n 16 -e '16/1 "%02x"' /tmp/rng)"
result md5 "$(md5sum < /tmp/rng | cut -d' ' -f1)"
echo @@DONE
`;
}

export interface BlkScriptOptions {
  /** MiB of the pattern written at offset 0 (default 32). */
  mib?: number;
  /** PCI address of the virtio-blk device (default: the first virtio-blk). */
  pci?: string;
}

/**
 * virtio-blk data check: `mib` MiB of /dev/urandom into a tmpfs file (its
 * sha256 is the "known pattern" the host checks the image against), written
 * to the disk at offset 0 with O_DIRECT (+ fsync, so a FLUSH is sent when
 * the device offers one), read back with O_DIRECT after dropping caches, and
 * compared.
 *
 * Results: blk_* (device), blkdev, sectors, ro, pattern_sha256, pattern_md5s
 * (md5 of each MiB, space separated), write_status, write_s, read_status,
 * read_s, readback_sha256, match (yes|no), and on a mismatch first_diff (cmp's
 * line) and bad_mib (the MiB indices that differ).
 */
export function virtioBlkGuestScript(o: BlkScriptOptions = {}): string {
  const mib = checkMiB(o.mib ?? 32, 'mib');
  const pci = checkPci(o.pci);
  return `${VIRTIO_HELPERS}
v=$(virtio_find ${hex4(VIRTIO_ID_BLOCK)} "${pci}") || { result error "no virtio-blk device on the virtio bus"; ls -l /sys/bus/virtio/devices/; exit 1; }
virtio_report blk $v
i=0
while [ $i -lt 100 ] && ! ls $v/block/* >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done
blk=$(ls $v/block 2>/dev/null | head -n 1)
[ -n "$blk" ] || { result error "virtio device $v has no block device"; exit 1; }
dev=/dev/$blk
i=0
while [ $i -lt 100 ] && [ ! -b $dev ]; do sleep 0.1; i=$((i + 1)); done
result blkdev $blk
result sectors "$(cat /sys/block/$blk/size)"
result ro "$(cat /sys/block/$blk/ro)"
result logical_block_size "$(cat /sys/block/$blk/queue/logical_block_size)"
${patternRoundTrip(mib)}
sync
echo @@DONE
`;
}
