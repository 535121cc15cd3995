//! Checking a library file's ELF headers before any dynamic loader sees it.
//!
//! The dynamic loader trusts the headers it maps: a truncated or corrupted library can
//! make it read past the end of the file (a `SIGBUS` on the mapped pages) or fail in ways
//! that say little. [`validate_elf`] reads the headers of the bytes the loader hashed,
//! bounded and without `unsafe`, and refuses anything that is not an ELF shared library
//! for this machine whose tables and segments lie inside the file. It does not judge
//! what the segments hold: the allowlist and the loader's later checks do.
//!
//! Checked, in this order (the first failure is reported, with the offending offsets):
//!
//! 1. the ELF magic `7f 45 4c 46`;
//! 2. the class (32 or 64 bit) and the data encoding (little or big endian) of this
//!    machine, and ELF version 1;
//! 3. the file type `ET_DYN` (a shared object) and the machine (`e_machine`) of this
//!    machine;
//! 4. the program header table: its entry size, at least one entry, and the whole table
//!    inside the file;
//! 5. every segment's file range (`p_offset + p_filesz`) inside the file, at least one
//!    loadable (`PT_LOAD`) segment, and no loadable segment whose file size is above its
//!    memory size;
//! 6. when the file has section headers: their entry size, the whole table inside the
//!    file, the section-name table index, and every section that occupies file bytes
//!    inside the file.

use std::fmt::Write as _;

/// The 4 bytes every ELF file starts with.
const MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
/// `e_ident[EI_CLASS]`: 32-bit objects.
const CLASS_32: u8 = 1;
/// `e_ident[EI_CLASS]`: 64-bit objects.
const CLASS_64: u8 = 2;
/// `e_ident[EI_DATA]`: two's complement, little endian.
const DATA_LSB: u8 = 1;
/// `e_ident[EI_DATA]`: two's complement, big endian.
const DATA_MSB: u8 = 2;
/// `EV_CURRENT`.
const VERSION_CURRENT: u8 = 1;
/// `e_type`: a shared object.
const ET_DYN: u16 = 3;
/// `p_type`: a loadable segment.
const PT_LOAD: u32 = 1;
/// `e_phnum` when the real count is elsewhere (not used by shared libraries).
const PN_XNUM: u16 = 0xffff;
/// `sh_type`: occupies no file bytes.
const SHT_NOBITS: u32 = 8;
/// `sh_type`: the unused first entry.
const SHT_NULL: u32 = 0;
/// `e_shstrndx` when the real index is in section 0's `sh_link`.
const SHN_XINDEX: u16 = 0xffff;
/// Most section headers examined; a library has a few dozen.
const MAX_SECTIONS: u64 = 1 << 16;

/// The ELF target a library must be built for: this machine's, or another for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfTarget {
    /// `ELFCLASS32` (1) or `ELFCLASS64` (2).
    pub class: u8,
    /// `ELFDATA2LSB` (1) or `ELFDATA2MSB` (2).
    pub data: u8,
    /// `e_machine`, or `None` on an architecture this check does not know (then any
    /// machine passes, and the dynamic loader decides).
    pub machine: Option<u16>,
}

impl ElfTarget {
    /// The machine this engine runs on.
    pub const HOST: ElfTarget = ElfTarget {
        class: if cfg!(target_pointer_width = "64") {
            CLASS_64
        } else {
            CLASS_32
        },
        data: if cfg!(target_endian = "little") {
            DATA_LSB
        } else {
            DATA_MSB
        },
        machine: host_machine(),
    };
}

/// `e_machine` of the architecture this engine is built for.
const fn host_machine() -> Option<u16> {
    if cfg!(target_arch = "x86_64") {
        Some(62)
    } else if cfg!(target_arch = "aarch64") {
        Some(183)
    } else if cfg!(target_arch = "arm") {
        Some(40)
    } else if cfg!(target_arch = "x86") {
        Some(3)
    } else if cfg!(target_arch = "riscv64") || cfg!(target_arch = "riscv32") {
        Some(243)
    } else {
        None
    }
}

/// Checks that `bytes` are an ELF shared library for this machine whose program headers,
/// segments and section headers lie inside the file. The error says what is wrong and
/// where, in one line.
pub fn validate_elf(bytes: &[u8]) -> Result<(), String> {
    validate_elf_for(bytes, ElfTarget::HOST)
}

/// [`validate_elf`] for `target` instead of this machine.
pub fn validate_elf_for(bytes: &[u8], target: ElfTarget) -> Result<(), String> {
    let len = bytes.len() as u64;
    if bytes.len() < 16 {
        return Err(format!(
            "the file is {len} bytes, too short for an ELF identification (16 bytes)"
        ));
    }
    if bytes[..4] != MAGIC {
        return Err(format!(
            "not an ELF file: it starts with {}, not 7f 45 4c 46 (\\x7fELF)",
            hex_bytes(&bytes[..4])
        ));
    }
    let (class, data, version) = (bytes[4], bytes[5], bytes[6]);
    if class != target.class {
        return Err(format!(
            "the file is {}, this machine needs {}",
            class_name(class),
            class_name(target.class)
        ));
    }
    if data != target.data {
        return Err(format!(
            "the file is {}, this machine needs {}",
            data_name(data),
            data_name(target.data)
        ));
    }
    if version != VERSION_CURRENT {
        return Err(format!(
            "ELF identification version {version} at byte 6, expected 1"
        ));
    }
    let r = Reader {
        bytes,
        big_endian: data == DATA_MSB,
    };
    let wide = class == CLASS_64;
    let header = Header::read(&r, wide)?;
    if header.e_type != ET_DYN {
        return Err(format!(
            "ELF file type {} ({}), a plugin library must be a shared object (ET_DYN, 3)",
            header.e_type,
            type_name(header.e_type)
        ));
    }
    if let Some(machine) = target.machine {
        if header.e_machine != machine {
            return Err(format!(
                "built for machine {} ({}), this machine is {} ({})",
                header.e_machine,
                machine_name(header.e_machine),
                machine,
                machine_name(machine)
            ));
        }
    }
    if header.e_version != u32::from(VERSION_CURRENT) {
        return Err(format!(
            "ELF header version {} at byte 20, expected 1",
            header.e_version
        ));
    }
    check_segments(&r, &header, wide, len)?;
    check_sections(&r, &header, wide, len)?;
    Ok(())
}

/// The fields of the ELF header the checks use.
struct Header {
    e_type: u16,
    e_machine: u16,
    e_version: u32,
    e_phoff: u64,
    e_shoff: u64,
    e_phentsize: u16,
    e_phnum: u16,
    e_shentsize: u16,
    e_shnum: u16,
    e_shstrndx: u16,
}

impl Header {
    fn read(r: &Reader<'_>, wide: bool) -> Result<Header, String> {
        let size: u64 = if wide { 64 } else { 52 };
        if r.len() < size {
            return Err(format!(
                "the file is {} bytes, too short for the {size}-byte ELF header",
                r.len()
            ));
        }
        // Offsets of e_phoff and the fields after it differ between the classes.
        let (phoff, shoff, rest) = if wide {
            (r.u64(32)?, r.u64(40)?, 52)
        } else {
            (u64::from(r.u32(28)?), u64::from(r.u32(32)?), 40)
        };
        Ok(Header {
            e_type: r.u16(16)?,
            e_machine: r.u16(18)?,
            e_version: r.u32(20)?,
            e_phoff: phoff,
            e_shoff: shoff,
            e_phentsize: r.u16(rest + 2)?,
            e_phnum: r.u16(rest + 4)?,
            e_shentsize: r.u16(rest + 6)?,
            e_shnum: r.u16(rest + 8)?,
            e_shstrndx: r.u16(rest + 10)?,
        })
    }
}

/// The program header table and every segment's file range.
fn check_segments(r: &Reader<'_>, h: &Header, wide: bool, len: u64) -> Result<(), String> {
    let entsize: u16 = if wide { 56 } else { 32 };
    if h.e_phnum == 0 {
        return Err("the file has no program headers: nothing a dynamic loader could map".into());
    }
    if h.e_phnum == PN_XNUM {
        return Err(
            "the program header count is 0xffff (PN_XNUM, extended numbering), which a \
             shared library does not use"
                .into(),
        );
    }
    if h.e_phentsize != entsize {
        return Err(format!(
            "program header entries are {} bytes, expected {entsize}",
            h.e_phentsize
        ));
    }
    let table = u64::from(h.e_phnum) * u64::from(entsize);
    table_inside(
        "program header table",
        h.e_phoff,
        table,
        u64::from(h.e_phnum),
        len,
    )?;
    let mut loads = 0usize;
    for i in 0..u64::from(h.e_phnum) {
        let at = h.e_phoff + i * u64::from(entsize);
        let (p_type, offset, filesz, memsz) = if wide {
            (r.u32(at)?, r.u64(at + 8)?, r.u64(at + 32)?, r.u64(at + 40)?)
        } else {
            (
                r.u32(at)?,
                u64::from(r.u32(at + 4)?),
                u64::from(r.u32(at + 16)?),
                u64::from(r.u32(at + 20)?),
            )
        };
        let what = if p_type == PT_LOAD {
            format!("loadable segment {i}")
        } else {
            format!("{} segment {i}", segment_type_name(p_type))
        };
        if filesz > 0 {
            range_inside(&what, offset, filesz, len)?;
        }
        if p_type == PT_LOAD {
            loads += 1;
            if filesz > memsz {
                return Err(format!(
                    "{what} has {filesz} bytes in the file but only {memsz} in memory"
                ));
            }
        }
    }
    if loads == 0 {
        return Err(format!(
            "none of the {} program headers is a loadable segment (PT_LOAD)",
            h.e_phnum
        ));
    }
    Ok(())
}

/// The section header table and every section that occupies file bytes.
fn check_sections(r: &Reader<'_>, h: &Header, wide: bool, len: u64) -> Result<(), String> {
    let entsize: u16 = if wide { 64 } else { 40 };
    if h.e_shnum == 0 && h.e_shoff == 0 {
        // No section headers: allowed (a stripped object may have none).
        return Ok(());
    }
    if h.e_shentsize != entsize {
        return Err(format!(
            "section header entries are {} bytes, expected {entsize}",
            h.e_shentsize
        ));
    }
    // With 0 here and a table present, section 0's sh_size holds the real count
    // (extended numbering): section 0 must be inside the file to read it.
    let count = if h.e_shnum == 0 {
        table_inside("section header 0", h.e_shoff, u64::from(entsize), 1, len)?;
        let count = section(r, h.e_shoff, wide)?.size;
        if count == 0 || count > MAX_SECTIONS {
            return Err(format!(
                "the section count in section header 0 (extended numbering) is {count}, \
                 expected 1 to {MAX_SECTIONS}"
            ));
        }
        count
    } else {
        u64::from(h.e_shnum)
    };
    table_inside(
        "section header table",
        h.e_shoff,
        count * u64::from(entsize),
        count,
        len,
    )?;
    let names = if h.e_shstrndx == SHN_XINDEX {
        u64::from(section(r, h.e_shoff, wide)?.link)
    } else {
        u64::from(h.e_shstrndx)
    };
    if names >= count {
        return Err(format!(
            "the section-name table is section {names}, but the file has {count} sections"
        ));
    }
    for i in 0..count {
        let s = section(r, h.e_shoff + i * u64::from(entsize), wide)?;
        if s.kind != SHT_NULL && s.kind != SHT_NOBITS && s.size > 0 {
            range_inside(&format!("section {i}"), s.offset, s.size, len)?;
        }
    }
    Ok(())
}

/// The fields of a section header the checks use.
struct Section {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

fn section(r: &Reader<'_>, at: u64, wide: bool) -> Result<Section, String> {
    Ok(if wide {
        Section {
            kind: r.u32(at + 4)?,
            offset: r.u64(at + 24)?,
            size: r.u64(at + 32)?,
            link: r.u32(at + 40)?,
        }
    } else {
        Section {
            kind: r.u32(at + 4)?,
            offset: u64::from(r.u32(at + 16)?),
            size: u64::from(r.u32(at + 20)?),
            link: r.u32(at + 24)?,
        }
    })
}

/// Refuses a table of `count` entries, `size` bytes at `offset`, that leaves the file.
fn table_inside(what: &str, offset: u64, size: u64, count: u64, len: u64) -> Result<(), String> {
    let entries = if count == 1 { "entry" } else { "entries" };
    match offset.checked_add(size) {
        Some(end) if end <= len => Ok(()),
        Some(end) => Err(format!(
            "the {what} ({count} {entries}, bytes {offset:#x}..{end:#x}) ends past the end \
             of the {len}-byte file"
        )),
        None => Err(format!(
            "the {what} ({count} {entries} at offset {offset:#x}) lies beyond any file size"
        )),
    }
}

/// Refuses `size` bytes at `offset` that leave the file.
fn range_inside(what: &str, offset: u64, size: u64, len: u64) -> Result<(), String> {
    match offset.checked_add(size) {
        Some(end) if end <= len => Ok(()),
        Some(end) => Err(format!(
            "{what} (bytes {offset:#x}..{end:#x}) ends past the end of the {len}-byte file"
        )),
        None => Err(format!(
            "{what} ({size:#x} bytes at offset {offset:#x}) lies beyond any file size"
        )),
    }
}

/// Bounded reads of the file's integers in its byte order.
struct Reader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn array<const N: usize>(&self, at: u64) -> Result<[u8; N], String> {
        usize::try_from(at)
            .ok()
            .and_then(|start| self.bytes.get(start..start.checked_add(N)?))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| {
                format!(
                    "a {N}-byte field at offset {at:#x} lies past the end of the {}-byte file",
                    self.len()
                )
            })
    }

    fn u16(&self, at: u64) -> Result<u16, String> {
        let b = self.array::<2>(at)?;
        Ok(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: u64) -> Result<u32, String> {
        let b = self.array::<4>(at)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(&self, at: u64) -> Result<u64, String> {
        let b = self.array::<8>(at)?;
        Ok(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    let mut s = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn class_name(class: u8) -> String {
    match class {
        CLASS_32 => "32-bit (ELFCLASS32)".into(),
        CLASS_64 => "64-bit (ELFCLASS64)".into(),
        other => format!("of unknown class {other}"),
    }
}

fn data_name(data: u8) -> String {
    match data {
        DATA_LSB => "little endian (ELFDATA2LSB)".into(),
        DATA_MSB => "big endian (ELFDATA2MSB)".into(),
        other => format!("of unknown data encoding {other}"),
    }
}

fn type_name(e_type: u16) -> &'static str {
    match e_type {
        0 => "no file type",
        1 => "a relocatable object",
        2 => "an executable",
        3 => "a shared object",
        4 => "a core dump",
        _ => "unknown",
    }
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        3 => "x86",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC 64",
        22 => "S/390",
        40 => "ARM",
        62 => "x86-64",
        183 => "AArch64",
        243 => "RISC-V",
        _ => "unknown",
    }
}

fn segment_type_name(p_type: u32) -> String {
    match p_type {
        0 => "PT_NULL".into(),
        1 => "PT_LOAD".into(),
        2 => "PT_DYNAMIC".into(),
        3 => "PT_INTERP".into(),
        4 => "PT_NOTE".into(),
        6 => "PT_PHDR".into(),
        7 => "PT_TLS".into(),
        0x6474_e550 => "PT_GNU_EH_FRAME".into(),
        0x6474_e551 => "PT_GNU_STACK".into(),
        0x6474_e552 => "PT_GNU_RELRO".into(),
        0x6474_e553 => "PT_GNU_PROPERTY".into(),
        other => format!("{other:#x}"),
    }
}

#[cfg(test)]
mod tests;
