// VFIO_USER_DEVICE_FEATURE: DMA dirty logging goes to the IOMMU model's dirty
// tracking; migration features are refused (we do not offer migration).
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
} from '../protocol/constants.js';
import { fail } from '../protocol/errno.js';
import {
  decodeDeviceFeatureRequest, encodeDeviceFeatureReply, encodeDmaLoggingReportReply, encodeDmaLoggingStartReply,
} from '../protocol/commands/device-feature.js';
import type { HandlerContext, Reply } from './handler-context.js';

const LOGGING = new Set([
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
]);

export function handleDeviceFeature(s: HandlerContext, payload: Buffer, nfds: number): Reply {
  const req = decodeDeviceFeatureRequest(payload, s.limits, nfds);
  if (!LOGGING.has(req.feature)) throw fail('EOPNOTSUPP', `device feature ${req.feature} is not supported (no migration)`);
  if (req.op === 'probe') return { payload: encodeDeviceFeatureReply(req) };
  switch (req.feature) {
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_START: {
      const l = req.logging!;
      const pageSize = s.space.loggingStart(l.pageSize, l.ranges);
      return { payload: encodeDmaLoggingStartReply(req, BigInt(pageSize)) };
    }
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
      s.space.loggingStop();
      return { payload: encodeDeviceFeatureReply(req) };
    default: {
      const r = req.report!;
      const bitmap = s.space.loggingReport(r.iova, r.length, r.pageSize);
      return { payload: encodeDmaLoggingReportReply(req, bitmap) };
    }
  }
}
