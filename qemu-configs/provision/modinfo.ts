// Reading a kernel module's .modinfo section (what `modinfo` prints) from its ELF file.
// The Debian kernel package has no modules.dep (depmod runs at install time), so
// dependencies are resolved from each module's own `depends=` field instead.

export interface ModInfo {
  name?: string;
  /** Module names this one needs loaded first (as written by modpost). */
  depends: string[];
  vermagic?: string;
}

/** Parses the `.modinfo` section of an ELF64 little-endian relocatable object. */
export function readModInfo(elf: Buffer): ModInfo {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw new Error('not an ELF file');
  if (elf[4] !== 2 || elf[5] !== 1) throw new Error('not a 64-bit little-endian ELF file');
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  if (shentsize < 64 || shstrndx >= shnum || shoff + shnum * shentsize > elf.length) {
    throw new Error('bad ELF section header table');
  }
  const section = (i: number) => {
    const h = shoff + i * shentsize;
    const offset = Number(elf.readBigUInt64LE(h + 0x18));
    const size = Number(elf.readBigUInt64LE(h + 0x20));
    if (offset + size > elf.length) throw new Error(`ELF section ${i} runs past the end of the file`);
    return { nameOff: elf.readUInt32LE(h), offset, size };
  };
  const strtab = section(shstrndx);
  const nameOf = (off: number) => {
    const start = strtab.offset + off;
    const end = elf.indexOf(0, start);
    return elf.toString('latin1', start, end < 0 ? strtab.offset + strtab.size : end);
  };
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (nameOf(s.nameOff) !== '.modinfo') continue;
    const info: ModInfo = { depends: [] };
    for (const entry of elf.toString('latin1', s.offset, s.offset + s.size).split('\0')) {
      const eq = entry.indexOf('=');
      if (eq < 0) continue;
      const key = entry.slice(0, eq);
      const value = entry.slice(eq + 1);
      if (key === 'depends') info.depends = value.split(',').filter(Boolean);
      else if (key === 'name') info.name = value;
      else if (key === 'vermagic') info.vermagic = value;
    }
    return info;
  }
  throw new Error('no .modinfo section');
}

/** Module names compare with '-' and '_' treated alike (as the kernel does). */
export function normModName(name: string): string {
  return name.replace(/-/g, '_');
}
