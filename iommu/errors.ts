// Errors of the IOMMU model that carry structured data beside the errno (e.g.
// IOVA_RANGES answering EMSGSIZE with the number of ranges it needs).
import { Errno, VfioUserError, type ErrnoName } from '../protocol/errno.js';

export class IommuError extends VfioUserError {
  readonly data: Record<string, unknown>;
  constructor(name: ErrnoName, message: string, data: Record<string, unknown>) {
    super(Errno[name], message);
    this.name = 'IommuError';
    this.data = data;
  }
}
