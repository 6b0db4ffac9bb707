// mmap protection bits, without loading the addon: the IOMMU model uses the
// same two bits for an area's device access rights (IOMMU_READ/IOMMU_WRITE).

/** Readable (mmap PROT_READ; IOMMU_READ for an IOVA area). */
export const PROT_READ = 1;
/** Writable (mmap PROT_WRITE; IOMMU_WRITE for an IOVA area). */
export const PROT_WRITE = 2;
