// The PCI layer's VFIO numbers, checked against include/uapi/linux/vfio.h.
import t from 'tap';
import * as local from '../../devices/pci/vfio-constants.js';

t.test('values from vfio.h', async (t) => {
  t.equal(local.VFIO_IRQ_SET_DATA_TYPE_MASK, 0x07);
  t.equal(local.VFIO_IRQ_SET_ACTION_TYPE_MASK, 0x38);
  t.equal(local.VFIO_PCI_CONFIG_REGION_INDEX, 7);
  t.equal(local.VFIO_PCI_NUM_IRQS, 5);
});
