// What the dynamic loader needs to run an ELF64 x86-64 object: its program
// interpreter (PT_INTERP) and, from its dynamic section, the libraries it
// needs (DT_NEEDED) and where it asks to look for them (DT_RUNPATH/DT_RPATH).
// Read through the program headers, which every loadable object has, so that
// stripped section headers do not matter.

export interface ElfDynamic {
  /** PT_INTERP, e.g. "/lib64/ld-linux-x86-64.so.2" (executables only). */
  interpreter?: string;
  /** DT_NEEDED sonames, in order. */
  needed: string[];
  /** DT_RUNPATH, else DT_RPATH, split on ':' ($ORIGIN left as is). */
  runpath: string[];
  /** DT_SONAME, if any. */
  soname?: string;
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;
const PHDR_SIZE = 56;
const DYN_SIZE = 16;
/** More program headers than any real object has: a corrupt count. */
const MAX_PHDRS = 256;

/** Parses the dynamic-linking facts of a 64-bit little-endian ELF file (throws on anything malformed). */
export function readElfDynamic(elf: Buffer): ElfDynamic {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw new Error('not an ELF file');
  if (elf[4] !== 2 || elf[5] !== 1) throw new Error('not a 64-bit little-endian ELF file');
  const phoff = u64(elf, 0x20);
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  if (phentsize < PHDR_SIZE || phnum > MAX_PHDRS || phoff + phnum * phentsize > elf.length) {
    throw new Error('bad ELF program header table');
  }
  const loads: { vaddr: number; offset: number; filesz: number }[] = [];
  let dyn: { offset: number; size: number } | undefined;
  const out: ElfDynamic = { needed: [], runpath: [] };
  for (let i = 0; i < phnum; i++) {
    const h = phoff + i * phentsize;
    const type = elf.readUInt32LE(h);
    const offset = u64(elf, h + 8);
    const vaddr = u64(elf, h + 16);
    const filesz = u64(elf, h + 32);
    if (offset + filesz > elf.length) throw new Error(`ELF segment ${i} runs past the end of the file`);
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    else if (type === PT_DYNAMIC) dyn = { offset, size: filesz };
    else if (type === PT_INTERP) out.interpreter = cString(elf, offset, offset + filesz);
  }
  if (!dyn) return out; // statically linked
  const entries: [number, number][] = [];
  let strtab: number | undefined;
  let strsz: number | undefined;
  for (let o = dyn.offset; o + DYN_SIZE <= dyn.offset + dyn.size; o += DYN_SIZE) {
    const tag = u64(elf, o);
    const val = u64(elf, o + 8);
    if (tag === DT_NULL) break;
    if (tag === DT_STRTAB) strtab = val;
    else if (tag === DT_STRSZ) strsz = val;
    else entries.push([tag, val]);
  }
  if (strtab === undefined || strsz === undefined) throw new Error('ELF dynamic section without a string table');
  // DT_STRTAB is an address: find the file bytes that are loaded there.
  const seg = loads.find((l) => strtab! >= l.vaddr && strtab! + strsz! <= l.vaddr + l.filesz);
  if (!seg) throw new Error('ELF string table outside every loaded segment');
  const start = strtab - seg.vaddr + seg.offset;
  const str = (off: number) => {
    if (off >= strsz!) throw new Error(`ELF string offset ${off} past the table (${strsz} bytes)`);
    return cString(elf, start + off, start + strsz!);
  };
  let rpath: string[] = [];
  let runpath: string[] | undefined;
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) out.needed.push(str(val));
    else if (tag === DT_SONAME) out.soname = str(val);
    else if (tag === DT_RUNPATH) runpath = str(val).split(':').filter(Boolean);
    else if (tag === DT_RPATH) rpath = str(val).split(':').filter(Boolean);
  }
  // The loader ignores DT_RPATH when DT_RUNPATH is present.
  out.runpath = runpath ?? rpath;
  return out;
}

/** A u64 field as a number; larger values cannot be file offsets or sizes here. */
function u64(b: Buffer, at: number): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`ELF field at ${at} out of range`);
  return Number(v);
}

function cString(b: Buffer, start: number, end: number): string {
  const nul = b.indexOf(0, start);
  return b.toString('latin1', start, nul < 0 || nul > end ? end : nul);
}
