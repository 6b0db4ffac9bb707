// devices/pci keeps its own copy of the VFIO numbers; they must match the
// protocol layer's (both from Linux include/uapi/linux/vfio.h).
import t from 'tap';
import * as local from '../../devices/pci/vfio-constants.js';

let proto: Record<string, unknown> | undefined;
try {
  proto = (await import('../../protocol/constants.js')) as Record<string, unknown>;
} catch {
  proto = undefined;
}

t.test('devices/pci/vfio-constants agree with protocol/constants', { skip: proto ? false : 'protocol/constants not built' }, async (t) => {
  for (const [name, value] of Object.entries(local)) {
    if (name in proto!) t.equal(proto![name], value, name);
  }
});

t.test('values from vfio.h', async (t) => {
  t.equal(local.VFIO_IRQ_SET_DATA_TYPE_MASK, 0x07);
  t.equal(local.VFIO_IRQ_SET_ACTION_TYPE_MASK, 0x38);
  t.equal(local.VFIO_PCI_CONFIG_REGION_INDEX, 7);
  t.equal(local.VFIO_PCI_NUM_IRQS, 5);
});
