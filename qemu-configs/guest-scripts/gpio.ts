// The guest side of the GPIO check, shared by the demo and the e2e test: find
// our PCI-IDIO-16 by its ids, name the bound driver, find the gpiochip under
// it (32 lines: 0-15 outputs, 16-31 inputs), read the inputs and drive the
// outputs through the sysfs GPIO interface.
//
// An exported line appears under its name (the driver names them OUT0..15
// and IIN0..15) or as gpioN when it has none.
/** Printed when the guest waits for the host to flip input line 0. */
export const GPIO_FLIP_PROMPT = '@@WAIT flip-input-0';

export function gpioGuestScript(outputs: number, opts: { irq?: boolean } = {}): string {
  if (!Number.isInteger(outputs) || outputs < 0 || outputs > 0xffff) throw new RangeError(`outputs 0x${outputs.toString(16)}`);
  return `
line() { if [ -d /sys/class/gpio/$2 ]; then echo /sys/class/gpio/$2; else echo /sys/class/gpio/gpio$1; fi; }
dev=
for d in /sys/bus/pci/devices/*; do
  if [ "$(cat $d/vendor)" = 0x494f ] && [ "$(cat $d/device)" = 0x0dc8 ]; then dev=$d; fi
done
[ -n "$dev" ] || { result error "no 494f:0dc8 PCI device"; exit 1; }
result pci "$(basename "$dev")"
result ids "$(cat $dev/vendor):$(cat $dev/device)"
result driver "$(basename "$(readlink $dev/driver)")"
chip=
for c in /sys/class/gpio/gpiochip*; do
  case "$(readlink -f $c)" in "$(readlink -f $dev)"/*) chip=$c;; esac
done
[ -n "$chip" ] || { result error "no gpiochip under $dev"; exit 1; }
base=$(cat $chip/base)
result gpiochip "$(basename $chip) base=$base"
result ngpio "$(cat $chip/ngpio)"
v=0
i=0
while [ $i -lt 16 ]; do
  n=$((base + 16 + i))
  echo $n > /sys/class/gpio/export
  b=$(cat $(line $n IIN$i)/value)
  v=$((v | (b << i)))
  i=$((i + 1))
done
result inputs "$(printf 0x%04x $v)"
out=${outputs}
i=0
while [ $i -lt 16 ]; do
  n=$((base + i))
  echo $n > /sys/class/gpio/export
  echo $(( (out >> i) & 1 )) > $(line $n OUT$i)/value
  i=$((i + 1))
done
result outputs "$(printf 0x%04x $out)"
${opts.irq ? IRQ_PART : ''}
echo @@DONE
`;
}

export function hex16(v: number): string {
  return `0x${v.toString(16).padStart(4, '0')}`;
}

// Interrupt on input change: arm edge detection on IIN0 (the driver enables
// the card's IRQ), ask the host to flip line 0, wait for the new value and
// count the device's interrupts in /proc/interrupts.
const IRQ_PART = `
in0=$(line $((base + 16)) IIN0)
echo both > $in0/edge
irq=$(cat $dev/irq)
count() { grep -E "^ *$irq:" /proc/interrupts | awk '{print $2}'; }
before=$(count)
old=$(cat $in0/value)
echo "${GPIO_FLIP_PROMPT}"
i=0
while [ $i -lt 300 ] && [ "$(cat $in0/value)" = "$old" ]; do sleep 0.1; i=$((i + 1)); done
result in0 "$old->$(cat $in0/value)"
result irqs "$(( $(count) - before ))"
`;
