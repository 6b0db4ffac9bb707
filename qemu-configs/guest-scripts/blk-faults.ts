// The guest side of the injected-I/O-error check: O_DIRECT reads around and
// over a sector range the server fails on purpose, a buffered read across
// it (the page cache's readahead and retries make their own requests), and
// the kernel's own count of failed requests from dmesg.
import { VIRTIO_HELPERS, VIRTIO_ID_BLOCK } from './virtio.js';

export interface BlkFaultScriptOptions {
  /** First sector of the failing range; a multiple of 8 (4 KiB) and at least 128. */
  sector: number;
}

/**
 * Reads, in this order (each: NAME_status "<exit> <dd's last line>" and NAME_md5):
 *   before    O_DIRECT, the 64 KiB just below the range
 *   bad1      O_DIRECT, the 4 KiB of the range
 *   bad2      the same again
 *   after     O_DIRECT, the 64 KiB just above
 *   buffered  through the page cache, 32 KiB across the range
 *   head      O_DIRECT, the disk's first MiB
 *   again     O_DIRECT, bad1's 4 KiB once more after all that
 * then ioerr_lines: the kernel's "I/O error, dev" lines (one per failed request).
 */
export function blkFaultGuestScript(o: BlkFaultScriptOptions): string {
  const { sector } = o;
  if (!Number.isInteger(sector) || sector < 128 || sector % 8 !== 0) throw new RangeError(`sector ${sector}: want a multiple of 8, at least 128`);
  const block = sector / 8;
  return `${VIRTIO_HELPERS}
v=$(virtio_find 0x${VIRTIO_ID_BLOCK.toString(16).padStart(4, '0')} "") || { result error "no virtio-blk device on the virtio bus"; exit 1; }
virtio_report blk $v
i=0
while [ $i -lt 100 ] && ! ls $v/block/* >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done
dev=/dev/$(ls $v/block 2>/dev/null | head -n 1)
i=0
while [ $i -lt 100 ] && [ ! -b $dev ]; do sleep 0.1; i=$((i + 1)); done
[ -b $dev ] || { result error "no block device for $v"; exit 1; }
rd() {
  dd if=$dev of=/tmp/$1 bs=4096 skip=$2 count=$3 $4 2>/tmp/$1.err
  st=$?
  result $1_status "$st $(tail -n 1 /tmp/$1.err)"
  result $1_md5 "$(md5sum < /tmp/$1 | cut -d' ' -f1)"
}
rd before ${block - 16} 16 iflag=direct
rd bad1 ${block} 1 iflag=direct
rd bad2 ${block} 1 iflag=direct
rd after ${block + 1} 16 iflag=direct
rd buffered ${block - 4} 8
rd head 0 256 iflag=direct
rd again ${block} 1 iflag=direct
result ioerr_lines "$(dmesg | grep -c 'I/O error, dev')"
dmesg | grep 'I/O error, dev' | sed 's/^/IOERR /'
echo @@DONE
`;
}
