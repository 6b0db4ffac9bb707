// Register map of the ACCES PCI-IDIO-16, as Linux drivers/gpio/gpio-idio-16.c
// and gpio-pci-idio-16.c use it: eight byte-wide registers at the start of
// I/O BAR2. Several registers act on *access*, not on the value:
// reading IRQ_CTL enables the interrupt, writing it disables it, and any
// write to IN0_7 clears a pending interrupt.
export const Idio16Reg = {
  /** R/W: FET drive outputs 0-7. (gpio-regmap only writes it and caches.) */
  OUT0_7: 0x0,
  /** R: isolated inputs 0-7. W: clear interrupt. */
  IN0_7: 0x1,
  /** R: enable IRQ. W: disable IRQ. */
  IRQ_CTL: 0x2,
  /** R: activate input filters. W: deactivate input filters. */
  FILTER_CTL: 0x3,
  /** R/W: FET drive outputs 8-15 (register stride 4 in gpio-idio-16). */
  OUT8_15: 0x4,
  /** R: isolated inputs 8-15. W: unused. */
  IN8_15: 0x5,
  /** R: interrupt status. W: unused. */
  IRQ_STATUS: 0x6,
} as const;

/**
 * IRQ_STATUS bits. Linux's regmap-irq tests bit 2 (every input line's IRQ
 * uses mask BIT(2)); the pre-regmap driver required (status & 3) and
 * (status & 4). We report which input byte changed in bits 0-1.
 */
export const Idio16Status = {
  IN0_7_CHANGED: 0x1,
  IN8_15_CHANGED: 0x2,
  PENDING: 0x4,
} as const;

export const IDIO16_VENDOR = 0x494f; // ACCES I/O Products
export const IDIO16_DEVICE = 0x0dc8; // PCI-IDIO-16
/** The driver maps BAR2 (pci_bar_index = 2); an I/O BAR, as on the card. */
export const IDIO16_BAR = 2;
export const IDIO16_BAR_SIZE = 0x100;
