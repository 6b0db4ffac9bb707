// The guest side of the copy-engine example's check, with no driver for the
// device: the kernel reserves RESERVED_MIB at RESERVED_BASE (memmap=), busybox
// devmem writes a pattern there, programs the device through BAR0 (its
// address read from sysfs) and reads back the copy and the registers. Bus
// mastering is turned on by writing the PCI command register through sysfs
// config (no setpci here).
//
// Without a driver nobody has requested the device's IRQ, so its line is
// masked at the interrupt controller and /proc/interrupts cannot count it;
// the script reports the line anyway and shows the interrupt by the PCI status
// register's Interrupt Status bit (config offset 6, bit 3), which the device
// sets while INTx is asserted.

/** Where the kernel is told to leave 4 MiB alone: `memmap=4M$0x10000000` (the `$` is literal; no shell sees it). */
export const RESERVED_BASE = 0x1000_0000;
export const RESERVED_MIB = 4;

/** The guest kernel command-line word that reserves the window. */
export const RESERVE_CMDLINE = `memmap=${RESERVED_MIB}M$0x${RESERVED_BASE.toString(16)}`;

/** What the script copies: `words` 32-bit words from `src` to `dst` (both inside the reserved window). */
export interface CopyJob {
  src: number;
  dst: number;
  words: number;
}

/** The copy-engine's registers, as in examples/copy-engine (offsets in BAR0). */
export interface CopyEngineRegs {
  SRC_LO: number; SRC_HI: number; DST_LO: number; DST_HI: number; LEN: number;
  DOORBELL: number; STATUS: number; COMPLETIONS: number; ERRORS: number;
}

/** An IOVA no guest RAM is mapped at (the guest has far less than 16 TiB). */
export const BAD_IOVA_HI = 0x1000;

function inWindow(addr: number, bytes: number): boolean {
  return Number.isInteger(addr) && addr >= RESERVED_BASE && addr + bytes <= RESERVED_BASE + RESERVED_MIB * 2 ** 20 && addr % 4 === 0;
}

/**
 * Results: ids, driver, bar, reserved (the /proc/iomem line), then for each
 * step the STATUS/COMPLETIONS/ERRORS registers: nobm_* (doorbell with bus
 * mastering off), copy_*, intx_before/intx_raised/intx_acked (the status
 * bit), irq_line (/proc/interrupts or "none"), mismatches (words of the
 * destination that differ from the pattern), guard (the word after the
 * copy, untouched), bad_* (a source IOVA nothing is mapped at).
 */
export function copyEngineGuestScript(regs: CopyEngineRegs, job: CopyJob): string {
  const bytes = job.words * 4;
  if (!Number.isInteger(job.words) || job.words < 1 || job.words > 4096) throw new RangeError(`words ${job.words}`);
  if (!inWindow(job.src, bytes) || !inWindow(job.dst, bytes + 4)) throw new RangeError('copy outside the reserved window');
  const r = (name: keyof CopyEngineRegs) => `$((bar + ${regs[name]}))`;
  return `
dev=
for d in /sys/bus/pci/devices/*; do
  if [ "$(cat $d/vendor)" = 0x1234 ] && [ "$(cat $d/device)" = 0xc0de ]; then dev=$d; fi
done
[ -n "$dev" ] || { result error "no 1234:c0de PCI device"; exit 1; }
result ids "$(cat $dev/vendor):$(cat $dev/device)"
result driver "$(basename "$(readlink $dev/driver 2>/dev/null)")"
result reserved "$(grep -i '^ *${RESERVED_BASE.toString(16)}-' /proc/iomem | head -n1)"
bar=$(( $(head -n1 $dev/resource | cut -d' ' -f1) ))
result bar "$(printf 0x%x $bar)"
cfg16() { echo $(( 0x$(od -An -tx2 -j $1 -N 2 $dev/config | tr -d ' ') )); }
intx() { echo $(( ($(cfg16 6) >> 3) & 1 )); }
rd() { echo $(( $(devmem $1 32) )); }
wr() { devmem $1 32 $2; }
regs() {
  i=0
  while [ $i -lt 100 ] && [ $(( $(rd ${r('STATUS')}) & 1 )) = 1 ]; do usleep 10000; i=$((i + 1)); done
  result $1_status "$(rd ${r('STATUS')})"
  result $1_completions "$(rd ${r('COMPLETIONS')})"
  result $1_errors "$(rd ${r('ERRORS')})"
}
ack() { wr ${r('STATUS')} 6; }
go() {
  wr ${r('SRC_LO')} $(( $1 & 0xffffffff )); wr ${r('SRC_HI')} $(( $1 >> 32 ))
  wr ${r('DST_LO')} $(( $2 & 0xffffffff )); wr ${r('DST_HI')} $(( $2 >> 32 ))
  wr ${r('LEN')} $3
  wr ${r('DOORBELL')} 1
}
pattern() { echo $(( (0x9e3779b9 * ($1 + 1)) & 0xffffffff )); }

i=0
while [ $i -lt ${job.words} ]; do
  wr $(( ${job.src} + 4 * i )) $(pattern $i)
  wr $(( ${job.dst} + 4 * i )) 0
  i=$((i + 1))
done
wr $(( ${job.dst + bytes} )) 0x5a5a5a5a

# The bus-master guard: DMA with bus mastering off is an error, not a copy.
go ${job.src} ${job.dst} ${bytes}
regs nobm
ack

cmd=$(( $(cfg16 4) | 6 ))
printf "\\\\x$(printf %02x $(( cmd & 0xff )))" | dd of=$dev/config bs=1 seek=4 count=1 conv=notrunc 2>/dev/null
result command "$(printf 0x%04x $(cfg16 4))"

result intx_before "$(intx)"
go ${job.src} ${job.dst} ${bytes}
regs copy
result intx_raised "$(intx)"
irq=$(cat $dev/irq)
line=$(grep -E "^ *$irq:" /proc/interrupts | tr -s ' ')
result irq_line "irq $irq: \${line:-none}"
ack
result intx_acked "$(intx)"
result acked_status "$(rd ${r('STATUS')})"

bad=0
i=0
while [ $i -lt ${job.words} ]; do
  [ $(rd $(( ${job.dst} + 4 * i ))) = $(pattern $i) ] || bad=$((bad + 1))
  i=$((i + 1))
done
result mismatches "$bad"
result guard "$(printf 0x%08x $(rd $(( ${job.dst + bytes} ))))"

go $(( ${BAD_IOVA_HI} << 32 )) ${job.dst} ${bytes}
regs bad
result intx_fault "$(intx)"
ack
echo @@DONE
`;
}
