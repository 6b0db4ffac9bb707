// The guest side of the NVMe checks, shared by the e2e tests and the NVMe
// benchmark. A controller is found by its PCI address, or as the first PCI
// function of class 01 08 02 (NVM Express), and its namespaces under
// /sys/bus/pci/devices/<pci>/nvme/nvmeN/. The scripts work against our
// controller over vfio-user and against QEMU's built-in `-device nvme` alike
// (which is how they were first checked).
//
// Namespaces are chosen by NSID, never by name: the kernel numbers the block
// devices (nvme0n1, nvme0n2) in the order its asynchronous scan finishes, not
// by NSID. With native multipath the per-path nodes are nvmeXcYnZ and the
// block device is the head nvmeXnZ; without it they are the same node.
import { MARK, TIMING_HELPERS, checkLabels, checkMiB, checkPci, ddRounds, patternRoundTrip, type DdRoundsOptions } from './block.js';

export { MARK };

/** PCI class code of an NVM Express I/O controller (sysfs spelling). */
export const NVME_CLASS = '0x010802';

function checkNsid(nsid: number, what: string): number {
  if (!Number.isInteger(nsid) || nsid < 1 || nsid > 1024) throw new RangeError(`${what}: nsid ${nsid}`);
  return nsid;
}

/**
 * Shell helpers (with block.ts's TIMING_HELPERS):
 *   nvme_ctrl [PCI]           the controller's sysfs directory (…/nvme/nvmeN) of the
 *                             function at PCI, or of the first NVMe-class function;
 *                             waits up to 10 s for the driver to create it
 *   nvme_report PREFIX CTRL   results PREFIX_pci, _ids, _class, _pci_driver, _ctrl,
 *                             _model, _serial, _firmware, _queue_count, _sqsize,
 *                             _state, _msix_vectors, _iommu_domain (behind an IOMMU)
 *   nvme_ns CTRL NSID         the block device name of namespace NSID; waits up to 10 s
 *   nvme_names CTRL           the block device names of all its namespaces, in NSID order
 *   nvme_ns_report NAME       results NAME_nsid, _sectors, _lbs, _ro, _discard_max,
 *                             _max_hw_kb, _nr_queues, _write_cache
 */
export const NVME_HELPERS = `${TIMING_HELPERS}
nvme_pci_of_class() {
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/class)" = "${NVME_CLASS}" ] && { basename $d; return 0; }
  done
  return 1
}
nvme_ctrl() {
  tries=0
  while [ $tries -lt 100 ]; do
    p=$1
    [ -n "$p" ] || p=$(nvme_pci_of_class)
    if [ -n "$p" ]; then
      for c in /sys/bus/pci/devices/$p/nvme/nvme*; do
        [ -d "$c" ] && { echo "$c"; return 0; }
      done
    fi
    sleep 0.1
    tries=$((tries + 1))
  done
  return 1
}
nvme_report() {
  pd=$(readlink -f $2/device)
  result $1_pci "$(basename $pd)"
  result $1_ids "$(cat $pd/vendor):$(cat $pd/device)"
  result $1_class "$(cat $pd/class)"
  result $1_pci_driver "$(basename "$(readlink $pd/driver)")"
  result $1_ctrl "$(basename $2)"
  result $1_model "$(cat $2/model)"
  result $1_serial "$(cat $2/serial)"
  result $1_firmware "$(cat $2/firmware_rev)"
  result $1_queue_count "$(cat $2/queue_count)"
  result $1_sqsize "$(cat $2/sqsize)"
  result $1_state "$(cat $2/state)"
  result $1_msix_vectors "$(ls $pd/msi_irqs 2>/dev/null | wc -l)"
  if [ -e $pd/iommu_group ]; then
    result $1_iommu_domain "$(cat $pd/iommu_group/type 2>/dev/null || echo unknown)"
  fi
}
nvme_head() { basename $1 | sed 's/c[0-9]*n/n/'; }
nvme_ns() {
  tries=0
  while [ $tries -lt 100 ]; do
    for e in $1/nvme*n*; do
      [ -f $e/nsid ] && [ "$(cat $e/nsid)" = "$2" ] || continue
      n=$(nvme_head $e)
      [ -b /dev/$n ] && { echo $n; return 0; }
    done
    sleep 0.1
    tries=$((tries + 1))
  done
  return 1
}
nvme_names() {
  for e in $1/nvme*n*; do
    [ -f $e/nsid ] && echo "$(cat $e/nsid) $(nvme_head $e)"
  done | sort -n | cut -d' ' -f2 | tr '\\n' ' '
}
nvme_ns_report() {
  q=/sys/block/$1/queue
  result $1_nsid "$(cat /sys/block/$1/nsid 2>/dev/null || cat /sys/block/$1/device/nsid 2>/dev/null)"
  result $1_sectors "$(cat /sys/block/$1/size)"
  result $1_lbs "$(cat $q/logical_block_size)"
  result $1_ro "$(cat /sys/block/$1/ro)"
  result $1_discard_max "$(cat $q/discard_max_bytes)"
  result $1_max_hw_kb "$(cat $q/max_hw_sectors_kb)"
  result $1_nr_queues "$(ls /sys/block/$1/mq | wc -l)"
  result $1_write_cache "$(cat $q/write_cache)"
}
`;

export interface NvmeScriptOptions {
  /** PCI address of the controller (default: the first NVMe-class function). */
  pci?: string;
  /** Namespaces to wait for and report (NSIDs 1..n; default 1). */
  namespaces?: number;
  /** The known-pattern round trip (block.ts) on namespace `nsid`. */
  pattern?: { nsid: number; mib: number };
  /**
   * After the pattern: the first `writeMiB` MiB of it written to namespace
   * `nsid` at offset 0 (O_DIRECT, fsync), then `blkdiscard -o offsetMiB -l
   * lengthMiB` on that namespace (the host checks that the image lost the
   * blocks and holds zeros there). The guest waits a second after its
   * `@@MARK discard-start`, so that the host can look at the image first.
   */
  discard?: { nsid: number; writeMiB: number; offsetMiB: number; lengthMiB: number };
  /** After the rest: `count` reads of 4 KiB with O_DIRECT from namespace `nsid`, one at a time. */
  smallReads?: { nsid: number; count: number };
}

/**
 * NVMe e2e check: the controller and its namespaces as the guest's nvme
 * driver sees them, then optionally the pattern round trip, a discard and a
 * run of small reads.
 *
 * Results: nvme_* (controller, see nvme_report), names (block devices in NSID
 * order), each namespace's NAME_* (nvme_ns_report); with `pattern`: pattern_dev
 * and block.ts's pattern results; with `discard`: discard_dev, discard_write_status,
 * discard_status; with `smallReads`: small_status, small_s; last, per namespace
 * NAME_stat (/sys/block/NAME/stat: the block layer's counts), kernel_trouble (how
 * many kernel log lines tell of an nvme timeout, abort, reset, I/O error or a
 * completion the driver did not expect) and kernel_trouble_first, and irqs (the
 * nvme lines of /proc/interrupts, summed per line).
 */
export function nvmeGuestScript(o: NvmeScriptOptions = {}): string {
  const pci = checkPci(o.pci);
  const count = o.namespaces ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 16) throw new RangeError(`namespaces ${count}`);
  const parts: string[] = [];
  if (o.pattern) {
    checkNsid(o.pattern.nsid, 'pattern');
    parts.push(`
n=$(nvme_ns $c ${o.pattern.nsid}) || { result error "no namespace ${o.pattern.nsid}"; exit 1; }
dev=/dev/$n
result pattern_dev $n
${patternRoundTrip(o.pattern.mib)}`);
  }
  if (o.discard) {
    const d = o.discard;
    checkNsid(d.nsid, 'discard');
    checkMiB(d.writeMiB, 'discard writeMiB');
    if (!o.pattern || d.writeMiB > o.pattern.mib) throw new RangeError('discard writes part of the pattern: it needs a pattern of at least writeMiB');
    if (!Number.isInteger(d.offsetMiB) || !Number.isInteger(d.lengthMiB) || d.offsetMiB < 0 || d.lengthMiB < 1 || d.offsetMiB + d.lengthMiB > d.writeMiB) {
      throw new RangeError(`discard range ${d.offsetMiB}+${d.lengthMiB} MiB must lie inside the ${d.writeMiB} MiB written`);
    }
    parts.push(`
n=$(nvme_ns $c ${d.nsid}) || { result error "no namespace ${d.nsid}"; exit 1; }
result discard_dev $n
dd if=/tmp/pattern of=/dev/$n bs=1M count=${d.writeMiB} oflag=direct conv=fsync 2>/tmp/dd.err
result discard_write_status "$? $(tail -n 1 /tmp/dd.err)"
echo "${MARK} discard-start"
sleep 1
blkdiscard -o $((${d.offsetMiB} * 1048576)) -l $((${d.lengthMiB} * 1048576)) /dev/$n 2>/tmp/discard.err
result discard_status "$? $(tail -n 1 /tmp/discard.err)"
echo "${MARK} discard-end"`);
  }
  if (o.smallReads) {
    const s = o.smallReads;
    checkNsid(s.nsid, 'smallReads');
    if (!Number.isInteger(s.count) || s.count < 1 || s.count > 100_000) throw new RangeError(`smallReads count ${s.count}`);
    parts.push(`
n=$(nvme_ns $c ${s.nsid}) || { result error "no namespace ${s.nsid}"; exit 1; }
echo "${MARK} small-start"
t0=$EPOCHREALTIME
dd if=/dev/$n of=/dev/null bs=4096 count=${s.count} iflag=direct 2>/tmp/dd.err
st=$?
t1=$EPOCHREALTIME
echo "${MARK} small-end"
result small_status "$st $(tail -n 1 /tmp/dd.err)"
result small_s "$(elapsed $t0 $t1)"`);
  }
  return `${NVME_HELPERS}
c=$(nvme_ctrl "${pci}") || { result error "no nvme controller${pci ? ` at ${pci}` : ''}"; lspci 2>/dev/null; ls -l /sys/bus/pci/devices/; exit 1; }
nvme_report nvme $c
i=1
while [ $i -le ${count} ]; do
  n=$(nvme_ns $c $i) || { result error "namespace $i did not appear"; result names "$(nvme_names $c)"; exit 1; }
  i=$((i + 1))
done
names=$(nvme_names $c)
result names $names
for n in $names; do nvme_ns_report $n; done
${parts.join('\n')}
sync
for n in $names; do result \${n}_stat $(cat /sys/block/$n/stat); done
dmesg | grep -E 'nvme.*(timeout|invalid id|genctr|reset|I/O error|Abort|failed)' > /tmp/nvme-trouble
result kernel_trouble "$(wc -l < /tmp/nvme-trouble)"
result kernel_trouble_first "$(head -n 1 /tmp/nvme-trouble)"
result irqs "$(grep nvme /proc/interrupts | awk '{ s = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i; printf "%s=%d ", $NF, s }')"
echo @@DONE
`;
}

export interface NvmeBenchDisk {
  /** Result key part: [a-z0-9]+ (e.g. "ours", "qemu"). */
  label: string;
  /** PCI address of its controller. */
  pci: string;
  /** Namespace to use (default 1). */
  nsid?: number;
}

export interface NvmeBenchScriptOptions extends Omit<DdRoundsOptions, 'labels'> {
  disks: readonly NvmeBenchDisk[];
}

/**
 * NVMe throughput: block.ts's timed dd rounds on one namespace of each
 * controller. Results: <label>_* (nvme_report), <label>_dev, and per namespace
 * NAME_* (nvme_ns_report), then the rounds' results (t_<label>_<op>_<r>, ...).
 */
export function nvmeBenchScript(o: NvmeBenchScriptOptions): string {
  checkLabels(o.disks.map((d) => d.label));
  const find = o.disks
    .map((d) => {
      const pci = checkPci(d.pci);
      const nsid = checkNsid(d.nsid ?? 1, d.label);
      return `
c=$(nvme_ctrl ${pci}) || { result error "no nvme controller at ${pci}"; ls -l /sys/bus/pci/devices/; exit 1; }
nvme_report ${d.label} $c
n=$(nvme_ns $c ${nsid}) || { result error "no namespace ${nsid} at ${pci}"; exit 1; }
dev_${d.label}=/dev/$n
result ${d.label}_dev $n
nvme_ns_report $n`;
    })
    .join('\n');
  return `${NVME_HELPERS}
${find}
${ddRounds({ ...o, labels: o.disks.map((d) => d.label) })}
echo @@DONE
`;
}
