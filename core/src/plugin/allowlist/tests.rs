use super::*;
use proptest::prelude::*;

const HASH_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const HASH_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn entry(hash: &str, file: &str, review: &str) -> String {
    format!(
        r#"
[[plugin]]
vendor_id = "com.example.alpha"
file = "{file}"
sha256 = "{hash}"
versions = ">=1.2.0, <2.0.0"
firmware = {{ from = "1.0", to = "1.99" }}
notes = "first release"

[[plugin.products]]
manufacturer = "ALPHA"
product_codes = [0x0A01]

[plugin.review]
status = "{review}"
date = 2025-03-14
by = "integration team"

[plugin.compliance]
status = "passed"
date = 2025-03-20
"#
    )
}

fn parse(text: &str) -> Result<Allowlist, TomlFileError> {
    Allowlist::parse(Path::new("allowlist.toml"), text)
}

#[test]
fn a_full_entry_parses_into_its_fields() {
    let list = parse(&entry(HASH_A, "libalpha.so", "passed")).unwrap();
    let e = &list.entries()[0];
    assert_eq!(e.vendor_id.as_str(), "com.example.alpha");
    assert_eq!(e.file, "libalpha.so");
    assert_eq!(e.sha256.to_string(), HASH_A);
    assert!(e.versions.matches(&semver::Version::new(1, 4, 0)));
    assert!(!e.versions.matches(&semver::Version::new(2, 0, 0)));
    assert_eq!(e.products[0].product_codes, vec![0x0A01]);
    assert!(e.firmware.contains(&[1, 50]));
    assert!(!e.firmware.contains(&[2, 0]));
    // A more precise version (a build) is inside its bound: the range's upper bound covers
    // every build of it, and nothing of the next minor.
    let to = e.firmware.to.parts().to_vec();
    let mut build = to.clone();
    build.push(0xFF);
    assert!(e.firmware.contains(&build));
    let mut next = to;
    *next.last_mut().unwrap() += 1;
    next.push(0);
    assert!(!e.firmware.contains(&next));
    assert_eq!(e.review.date, ApprovalDate::new(2025, 3, 14).unwrap());
    assert!(e.is_approved());
    assert!(e.covers_product("ALPHA", Some(0x0A01)));
    assert!(!e.covers_product("ALPHA", Some(0x0A02)));
    assert!(!e.covers_product("ALPHA", None));
    assert!(!e.covers_product("alpha", Some(0x0A01)));
}

#[test]
fn an_empty_file_approves_nothing() {
    let list = parse("").unwrap();
    assert!(list.entries().is_empty());
    let d = Sha256Digest::of(b"x");
    assert_eq!(list.vet("libx.so", &d), Vetting::UnknownHash);
}

#[test]
fn vetting_tells_unknown_tampered_and_unpassed_apart() {
    let text = entry(HASH_A, "libalpha.so", "passed") + &entry(HASH_B, "libalpha2.so", "pending");
    let list = parse(&text).unwrap();
    let a: Sha256Digest = HASH_A.parse().unwrap();
    let b: Sha256Digest = HASH_B.parse().unwrap();
    let other = Sha256Digest::of(b"other");
    assert!(matches!(list.vet("libalpha.so", &a), Vetting::Approved(e) if e.sha256 == a));
    assert!(matches!(list.vet("libalpha2.so", &b), Vetting::NotPassed(e) if e.sha256 == b));
    assert_eq!(
        list.vet("libalpha.so", &other),
        Vetting::Tampered { expected: vec![a] }
    );
    assert_eq!(list.vet("libzeta.so", &other), Vetting::UnknownHash);
}

#[test]
fn approved_bytes_are_approved_only_under_their_entrys_file_name() {
    let text = entry(HASH_A, "libalpha.so", "passed") + &entry(HASH_B, "libalpha2.so", "pending");
    let list = parse(&text).unwrap();
    let a: Sha256Digest = HASH_A.parse().unwrap();
    let b: Sha256Digest = HASH_B.parse().unwrap();
    for other_name in [
        "anything.so",
        "libalpha.so.bak",
        "LIBALPHA.SO",
        "libalpha2.so",
        "",
    ] {
        assert!(
            matches!(list.vet(other_name, &a), Vetting::Misnamed(e) if e.file == "libalpha.so"),
            "{other_name:?}"
        );
    }
    // Bytes whose review has not passed are refused for that, whatever their name.
    assert!(matches!(list.vet("anything.so", &b), Vetting::NotPassed(e) if e.sha256 == b));
}

fn error_of(text: &str) -> TomlFileError {
    parse(text).expect_err("must be refused")
}

/// The line and column of the first occurrence of `needle` in `text`.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    crate::toml_file::line_column(text, text.find(needle).expect("needle in text"))
}

#[test]
fn unknown_keys_are_refused_with_their_location() {
    let text = entry(HASH_A, "a.so", "passed").replace("notes =", "noets =");
    let e = error_of(&text);
    assert_eq!((e.line, e.column), position_of(&text, "noets"), "{e}");
    assert!(e.message.contains("noets"), "{e}");

    let text = entry(HASH_A, "a.so", "passed").replace("by = ", "reviewer = ");
    let e = error_of(&text);
    assert_eq!((e.line, e.column), position_of(&text, "reviewer"), "{e}");

    let text = format!("allow_all = true\n{}", entry(HASH_A, "a.so", "passed"));
    let e = error_of(&text);
    assert_eq!((e.line, e.column), (1, 1), "{e}");
}

#[test]
fn bad_values_are_refused_where_they_are() {
    let cases = [
        (entry("12ab", "a.so", "passed"), "\"12ab\"", "64 hex"),
        (
            entry(HASH_A, "a.so", "passed").replace(">=1.2.0, <2.0.0", "one point two"),
            "\"one point two\"",
            "",
        ),
        (entry(HASH_A, "a.so", "approved"), "\"approved\"", "passed"),
        (
            entry(HASH_A, "a.so", "passed").replace("2025-03-14", "2025-03-14T10:00:00"),
            "2025-03-14T10:00:00",
            "date",
        ),
        (
            entry(HASH_A, "a.so", "passed").replace("com.example.alpha", "Com Example"),
            "\"Com Example\"",
            "vendor id",
        ),
        (
            entry(HASH_A, "a.so", "passed").replace("[0x0A01]", "[70000]"),
            "70000",
            "",
        ),
        (
            entry(HASH_A, "a.so", "passed").replace("to = \"1.99\"", "to = \"1.x\""),
            "\"1.x\"",
            "not a number",
        ),
        (
            entry(HASH_A, "dir/a.so", "passed"),
            "\"dir/a.so\"",
            "file name",
        ),
    ];
    for (text, at, words) in cases {
        let e = error_of(&text);
        assert_eq!((e.line, e.column), position_of(&text, at), "{e}");
        assert!(e.message.contains(words), "{e} should mention {words:?}");
    }
}

#[test]
fn cross_field_errors_are_located() {
    let text = entry(HASH_A, "a.so", "passed") + &entry(HASH_A, "b.so", "passed");
    let e = error_of(&text);
    let second = text.rfind(HASH_A).unwrap() - 1;
    assert_eq!(
        (e.line, e.column),
        crate::toml_file::line_column(&text, second),
        "{e}"
    );
    assert!(e.message.contains("already listed"), "{e}");

    let text = entry(HASH_A, "a.so", "passed").replace("from = \"1.0\"", "from = \"3.0\"");
    let e = error_of(&text);
    assert_eq!((e.line, e.column), position_of(&text, "{ from"), "{e}");
    assert!(e.message.contains("range is empty"), "{e}");
}

#[test]
fn the_ready_to_paste_entry_parses_back_to_itself() {
    let list = parse(&entry(HASH_A, "libalpha.so", "passed")).unwrap();
    let e = &list.entries()[0];
    let again = parse(&e.to_toml()).unwrap();
    assert_eq!(&again.entries()[0], e, "{}", e.to_toml());
    // Product codes read as vendors write them.
    assert!(
        e.to_toml().contains("product_codes = [0x0A01]"),
        "{}",
        e.to_toml()
    );
}

#[test]
fn the_shipped_example_allowlist_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/allowlist.toml");
    let list = Allowlist::load(&path).unwrap();
    assert!(!list.entries().is_empty());
}

proptest! {
    #[test]
    fn hostile_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse(&text);
    }

    #[test]
    fn mutated_entries_never_panic(cut in 0usize..600, insert in "[\\[\\]{}=\"a-z0-9. \\n]{0,12}") {
        let mut text = entry(HASH_A, "a.so", "passed");
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &insert);
        if let Err(e) = parse(&text) {
            prop_assert!(e.line >= 1 && e.column >= 1);
        }
    }
}
