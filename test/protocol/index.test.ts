// The barrel re-exports every codec the session wires.
import t from 'tap';
import * as P from '../../protocol/index.js';

t.test('protocol/index exports', async (t) => {
  const names = [
    'HEADER_SIZE', 'readHeader', 'writeHeader', 'validateRequestHeader', 'maxMessageSize', 'DEFAULT_LIMITS',
    'decodeVersionRequest', 'negotiateVersion', 'encodeVersionReply', 'encodeVersionRequest', 'decodeVersionReply',
    'decodeDmaMapRequest', 'decodeDmaUnmapRequest', 'encodeDmaUnmapReply', 'decodeDeviceGetInfoRequest',
    'encodeDeviceGetInfoReply', 'decodeRegionInfoRequest', 'encodeRegionInfoReply', 'decodeRegionIoFdsRequest',
    'encodeRegionIoFdsReply', 'decodeIrqInfoRequest', 'encodeIrqInfoReply', 'decodeSetIrqsRequest', 'setIrqsEventfds',
    'checkSetIrqsRange',
    'decodeRegionReadRequest', 'encodeRegionReadReply', 'decodeRegionWriteRequest', 'encodeRegionWriteReply',
    'encodeDmaReadRequest', 'decodeDmaReadReply', 'encodeDmaWriteRequest', 'decodeDmaWriteReply',
    'decodeDeviceResetRequest', 'decodeRegionWriteMultiRequest', 'encodeRegionWriteMultiReply',
    'decodeDeviceFeatureRequest', 'encodeDeviceFeatureReply', 'decodeMigDataReadRequest', 'encodeMigDataReadReply',
    'decodeMigDataWriteRequest', 'decodeDirtyPagesRequest', 'encodeDirtyPagesReply', 'commandName',
    'Command', 'VfioUserError', 'fail', 'Errno',
  ];
  for (const n of names) t.ok(n in P, n);
  t.equal(P.Command.MIG_DATA_WRITE, 18);
  t.equal(P.VFIO_PCI_NUM_REGIONS, 9);
  t.equal(P.VFIO_PCI_NUM_IRQS, 5);
  t.equal(P.VFIO_IRQ_SET_ACTION_TYPE_MASK, P.VFIO_IRQ_SET_ACTION_MASK | P.VFIO_IRQ_SET_ACTION_UNMASK | P.VFIO_IRQ_SET_ACTION_TRIGGER);
  t.equal(P.VFIO_DEVICE_FEATURE_PROBE, 0x40000);
});
