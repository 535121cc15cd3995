//! The ELF header checks on hand-made headers: every rule, every truncation, hostile
//! values.

use super::*;
use proptest::prelude::*;

const X86_64: ElfTarget = ElfTarget {
    class: CLASS_64,
    data: DATA_LSB,
    machine: Some(62),
};

const MIPS_BE: ElfTarget = ElfTarget {
    class: CLASS_32,
    data: DATA_MSB,
    machine: Some(8),
};

/// A program header as written.
#[derive(Clone, Copy)]
struct Ph {
    p_type: u32,
    offset: u64,
    filesz: u64,
    memsz: u64,
}

/// A section header as written.
#[derive(Clone, Copy)]
struct Sh {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

/// A small shared object: header, program headers at 64 (or 52), two loadable segments
/// covering bytes 0..0x200, a PT_DYNAMIC inside them, then three section headers.
#[derive(Clone)]
struct Lib {
    wide: bool,
    big_endian: bool,
    ident: [u8; 16],
    e_type: u16,
    e_machine: u16,
    e_version: u32,
    e_phoff: Option<u64>,
    e_shoff: Option<u64>,
    e_phentsize: Option<u16>,
    e_phnum: Option<u16>,
    e_shentsize: Option<u16>,
    e_shnum: Option<u16>,
    e_shstrndx: u16,
    phs: Vec<Ph>,
    shs: Vec<Sh>,
    body: usize,
}

impl Lib {
    fn new(target: ElfTarget) -> Lib {
        let mut ident = [0u8; 16];
        ident[..4].copy_from_slice(&MAGIC);
        ident[4] = target.class;
        ident[5] = target.data;
        ident[6] = 1;
        Lib {
            wide: target.class == CLASS_64,
            big_endian: target.data == DATA_MSB,
            ident,
            e_type: ET_DYN,
            e_machine: target.machine.unwrap_or(0),
            e_version: 1,
            e_phoff: None,
            e_shoff: None,
            e_phentsize: None,
            e_phnum: None,
            e_shentsize: None,
            e_shnum: None,
            e_shstrndx: 2,
            phs: vec![
                Ph {
                    p_type: PT_LOAD,
                    offset: 0,
                    filesz: 0x180,
                    memsz: 0x180,
                },
                Ph {
                    p_type: PT_LOAD,
                    offset: 0x180,
                    filesz: 0x80,
                    memsz: 0x1000,
                },
                Ph {
                    p_type: 2,
                    offset: 0x180,
                    filesz: 0x40,
                    memsz: 0x40,
                },
            ],
            shs: vec![
                Sh {
                    kind: SHT_NULL,
                    offset: 0,
                    size: 0,
                    link: 0,
                },
                Sh {
                    kind: 1,
                    offset: 0x100,
                    size: 0x40,
                    link: 0,
                },
                Sh {
                    kind: 3,
                    offset: 0x1c0,
                    size: 0x20,
                    link: 0,
                },
            ],
            body: 0x200,
        }
    }

    fn ehsize(&self) -> usize {
        if self.wide { 64 } else { 52 }
    }
    fn phentsize(&self) -> usize {
        if self.wide { 56 } else { 32 }
    }
    fn shentsize(&self) -> usize {
        if self.wide { 64 } else { 40 }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![
            0u8;
            self.body
                .max(self.ehsize() + self.phs.len() * self.phentsize())
        ];
        let shoff = self.e_shoff.unwrap_or(b.len() as u64);
        let phoff = self.e_phoff.unwrap_or(self.ehsize() as u64);
        b.resize(b.len() + self.shs.len() * self.shentsize(), 0);
        let mut w = Writer {
            b: &mut b,
            be: self.big_endian,
        };
        w.put(0, &self.ident);
        w.u16(16, self.e_type);
        w.u16(18, self.e_machine);
        w.u32(20, self.e_version);
        let rest = if self.wide {
            w.u64(32, phoff);
            w.u64(40, shoff);
            52
        } else {
            w.u32(28, phoff as u32);
            w.u32(32, shoff as u32);
            40
        };
        w.u16(rest, self.ehsize() as u16);
        w.u16(
            rest + 2,
            self.e_phentsize.unwrap_or(self.phentsize() as u16),
        );
        w.u16(rest + 4, self.e_phnum.unwrap_or(self.phs.len() as u16));
        w.u16(
            rest + 6,
            self.e_shentsize.unwrap_or(self.shentsize() as u16),
        );
        w.u16(rest + 8, self.e_shnum.unwrap_or(self.shs.len() as u16));
        w.u16(rest + 10, self.e_shstrndx);
        for (i, ph) in self.phs.iter().enumerate() {
            let at = self.ehsize() + i * self.phentsize();
            if self.e_phoff.is_some() {
                break;
            }
            w.u32(at, ph.p_type);
            if self.wide {
                w.u64(at + 8, ph.offset);
                w.u64(at + 32, ph.filesz);
                w.u64(at + 40, ph.memsz);
            } else {
                w.u32(at + 4, ph.offset as u32);
                w.u32(at + 16, ph.filesz as u32);
                w.u32(at + 20, ph.memsz as u32);
            }
        }
        if self.e_shoff.is_none() {
            for (i, sh) in self.shs.iter().enumerate() {
                let at = shoff as usize + i * self.shentsize();
                w.u32(at + 4, sh.kind);
                if self.wide {
                    w.u64(at + 24, sh.offset);
                    w.u64(at + 32, sh.size);
                    w.u32(at + 40, sh.link);
                } else {
                    w.u32(at + 16, sh.offset as u32);
                    w.u32(at + 20, sh.size as u32);
                    w.u32(at + 24, sh.link);
                }
            }
        }
        b
    }
}

struct Writer<'a> {
    b: &'a mut Vec<u8>,
    be: bool,
}

impl Writer<'_> {
    fn put(&mut self, at: usize, bytes: &[u8]) {
        self.b[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn u16(&mut self, at: usize, v: u16) {
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.put(at, &b);
    }
    fn u32(&mut self, at: usize, v: u32) {
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.put(at, &b);
    }
    fn u64(&mut self, at: usize, v: u64) {
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.put(at, &b);
    }
}

fn err(lib: &Lib) -> String {
    validate_elf_for(&lib.bytes(), X86_64).expect_err("refused")
}

#[test]
fn a_well_formed_library_passes_in_both_classes_and_byte_orders() {
    validate_elf_for(&Lib::new(X86_64).bytes(), X86_64).unwrap();
    validate_elf_for(&Lib::new(MIPS_BE).bytes(), MIPS_BE).unwrap();
    // No section headers at all is allowed.
    let mut lib = Lib::new(X86_64);
    lib.shs.clear();
    lib.e_shstrndx = 0;
    let mut bytes = lib.bytes();
    bytes[40..48].fill(0); // e_shoff = 0
    validate_elf_for(&bytes, X86_64).unwrap();
}

#[test]
fn the_host_target_is_this_machine() {
    let t = ElfTarget::HOST;
    if cfg!(target_arch = "x86_64") {
        assert_eq!(t, X86_64);
    }
    if cfg!(target_arch = "aarch64") {
        assert_eq!(t.machine, Some(183));
    }
    if cfg!(target_arch = "arm") {
        assert_eq!((t.class, t.machine), (CLASS_32, Some(40)));
    }
    // This machine's library passes the host check, another machine's does not.
    if let Some(machine) = t.machine {
        let mut lib = Lib::new(t);
        validate_elf(&lib.bytes()).unwrap();
        lib.e_machine = if machine == 62 { 183 } else { 62 };
        assert!(
            validate_elf(&lib.bytes())
                .unwrap_err()
                .contains("built for machine")
        );
    }
}

#[test]
fn identification_type_and_machine_must_be_this_machines() {
    assert!(
        validate_elf_for(b"\x7fELF", X86_64)
            .unwrap_err()
            .contains("too short for an ELF identification")
    );
    let mut lib = Lib::new(X86_64);
    lib.ident[..4].copy_from_slice(b"MZ\x90\x00");
    assert_eq!(
        err(&lib),
        "not an ELF file: it starts with 4d 5a 90 00, not 7f 45 4c 46 (\\x7fELF)"
    );

    let e = validate_elf_for(&Lib::new(MIPS_BE).bytes(), X86_64).unwrap_err();
    assert_eq!(
        e,
        "the file is 32-bit (ELFCLASS32), this machine needs 64-bit (ELFCLASS64)"
    );
    let mut lib = Lib::new(X86_64);
    lib.ident[5] = DATA_MSB;
    assert_eq!(
        err(&lib),
        "the file is big endian (ELFDATA2MSB), this machine needs little endian (ELFDATA2LSB)"
    );
    let mut lib = Lib::new(X86_64);
    lib.ident[4] = 9;
    assert!(err(&lib).contains("of unknown class 9"));
    let mut lib = Lib::new(X86_64);
    lib.ident[6] = 2;
    assert!(err(&lib).contains("version 2 at byte 6"));

    let mut lib = Lib::new(X86_64);
    lib.e_type = 2;
    assert_eq!(
        err(&lib),
        "ELF file type 2 (an executable), a plugin library must be a shared object (ET_DYN, 3)"
    );
    let mut lib = Lib::new(X86_64);
    lib.e_machine = 183;
    assert_eq!(
        err(&lib),
        "built for machine 183 (AArch64), this machine is 62 (x86-64)"
    );
    let mut lib = Lib::new(X86_64);
    lib.e_version = 7;
    assert!(err(&lib).contains("ELF header version 7"));
    // A machine this check does not know lets any e_machine through.
    let unknown = ElfTarget {
        machine: None,
        ..X86_64
    };
    let mut lib = Lib::new(X86_64);
    lib.e_machine = 9999;
    validate_elf_for(&lib.bytes(), unknown).unwrap();
}

#[test]
fn the_program_header_table_must_be_well_formed_and_inside_the_file() {
    let mut lib = Lib::new(X86_64);
    lib.e_phnum = Some(0);
    assert!(err(&lib).contains("no program headers"));
    let mut lib = Lib::new(X86_64);
    lib.e_phnum = Some(0xffff);
    assert!(err(&lib).contains("PN_XNUM"));
    let mut lib = Lib::new(X86_64);
    lib.e_phentsize = Some(32);
    assert_eq!(
        err(&lib),
        "program header entries are 32 bytes, expected 56"
    );

    let mut lib = Lib::new(X86_64);
    lib.e_phoff = Some(0x2a0);
    let len = lib.bytes().len();
    assert_eq!(
        err(&lib),
        format!(
            "the program header table (3 entries, bytes 0x2a0..0x348) ends past the end of the \
             {len}-byte file"
        )
    );
    let mut lib = Lib::new(X86_64);
    lib.e_phoff = Some(u64::MAX - 8);
    assert!(
        err(&lib).contains("lies beyond any file size"),
        "{}",
        err(&lib)
    );
}

#[test]
fn every_segment_must_lie_inside_the_file() {
    let mut lib = Lib::new(X86_64);
    lib.phs[1].filesz = 0x5_a000 - 0x180;
    let len = lib.bytes().len();
    assert_eq!(
        err(&lib),
        format!(
            "loadable segment 1 (bytes 0x180..0x5a000) ends past the end of the {len}-byte file"
        )
    );
    let mut lib = Lib::new(X86_64);
    lib.phs[2].offset = 0x10_0000;
    assert!(
        err(&lib).starts_with("PT_DYNAMIC segment 2 (bytes 0x100000..0x100040) ends past"),
        "{}",
        err(&lib)
    );
    let mut lib = Lib::new(X86_64);
    lib.phs[0].offset = u64::MAX;
    assert_eq!(
        err(&lib),
        "loadable segment 0 (0x180 bytes at offset 0xffffffffffffffff) lies beyond any file size"
    );
    let mut lib = Lib::new(X86_64);
    lib.phs[0].memsz = 0x10;
    assert_eq!(
        err(&lib),
        "loadable segment 0 has 384 bytes in the file but only 16 in memory"
    );
    let mut lib = Lib::new(X86_64);
    for ph in &mut lib.phs {
        ph.p_type = 4;
    }
    assert_eq!(
        err(&lib),
        "none of the 3 program headers is a loadable segment (PT_LOAD)"
    );
    // A segment with no file bytes may have any offset.
    let mut lib = Lib::new(X86_64);
    lib.phs.push(Ph {
        p_type: 0x6474_e551,
        offset: u64::MAX,
        filesz: 0,
        memsz: 0,
    });
    validate_elf_for(&lib.bytes(), X86_64).unwrap();
}

#[test]
fn the_section_headers_must_be_well_formed_and_inside_the_file() {
    let mut lib = Lib::new(X86_64);
    lib.e_shentsize = Some(40);
    assert_eq!(
        err(&lib),
        "section header entries are 40 bytes, expected 64"
    );
    let mut lib = Lib::new(X86_64);
    lib.e_shoff = Some(0x1000);
    let len = lib.bytes().len();
    assert_eq!(
        err(&lib),
        format!(
            "the section header table (3 entries, bytes 0x1000..0x10c0) ends past the end of \
             the {len}-byte file"
        )
    );
    let mut lib = Lib::new(X86_64);
    lib.e_shstrndx = 3;
    assert_eq!(
        err(&lib),
        "the section-name table is section 3, but the file has 3 sections"
    );
    let mut lib = Lib::new(X86_64);
    lib.shs[1].size = 0x1_0000;
    assert!(
        err(&lib).starts_with("section 1 (bytes 0x100..0x10100) ends past the end"),
        "{}",
        err(&lib)
    );
    // NOBITS sections (.bss) occupy no file bytes.
    let mut lib = Lib::new(X86_64);
    lib.shs[1].kind = SHT_NOBITS;
    lib.shs[1].size = 0x10_0000;
    validate_elf_for(&lib.bytes(), X86_64).unwrap();
}

#[test]
fn extended_section_numbering_is_read_from_section_zero() {
    let mut lib = Lib::new(X86_64);
    lib.e_shnum = Some(0);
    lib.shs[0].size = 3;
    lib.e_shstrndx = SHN_XINDEX;
    lib.shs[0].link = 2;
    validate_elf_for(&lib.bytes(), X86_64).unwrap();
    lib.shs[0].size = 4;
    assert!(
        err(&lib).starts_with("the section header table (4 entries"),
        "{}",
        err(&lib)
    );
    lib.shs[0].size = 0;
    assert!(
        err(&lib).contains("extended numbering) is 0"),
        "{}",
        err(&lib)
    );
    lib.shs[0].size = 3;
    lib.shs[0].link = 5;
    assert_eq!(
        err(&lib),
        "the section-name table is section 5, but the file has 3 sections"
    );
}

#[test]
fn every_truncation_of_a_library_is_refused_with_a_reason() {
    for target in [X86_64, MIPS_BE] {
        let full = Lib::new(target).bytes();
        for len in 0..full.len() {
            let e =
                validate_elf_for(&full[..len], target).expect_err("a truncated library is refused");
            assert!(!e.is_empty() && !e.contains('\n'), "{len}: {e}");
        }
    }
    let full = Lib::new(X86_64).bytes();
    assert_eq!(
        validate_elf_for(&full[..0x1f0], X86_64).unwrap_err(),
        "loadable segment 1 (bytes 0x180..0x200) ends past the end of the 496-byte file"
    );
    assert_eq!(
        validate_elf_for(&full[..40], X86_64).unwrap_err(),
        "the file is 40 bytes, too short for the 64-byte ELF header"
    );
    assert_eq!(
        validate_elf_for(&full[..0x210], X86_64).unwrap_err(),
        "the section header table (3 entries, bytes 0x200..0x2c0) ends past the end of the \
         528-byte file"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = validate_elf_for(&bytes, X86_64);
        let _ = validate_elf_for(&bytes, MIPS_BE);
    }

    #[test]
    fn corrupted_headers_never_panic_and_say_one_line(
        target in prop_oneof![Just(X86_64), Just(MIPS_BE)],
        edits in proptest::collection::vec((0usize..0x300, any::<u8>()), 1..12),
    ) {
        let mut bytes = Lib::new(target).bytes();
        for (at, v) in edits {
            if let Some(b) = bytes.get_mut(at) {
                *b = v;
            }
        }
        if let Err(e) = validate_elf_for(&bytes, target) {
            prop_assert!(!e.contains('\n'), "{}", e);
        }
    }
}
