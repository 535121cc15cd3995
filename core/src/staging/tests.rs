//! Stage 1 end to end on a real directory: chunks in any order, repeats, refusals, digest
//! mismatch, plugin refusal, a GX restart in the middle of an upload, and one file
//! uploaded for two updates at once. Unit tests (through the public API only), so that
//! mutation testing, which runs each package's unit tests, runs them.

#[path = "../../tests/common/mod.rs"]
mod common;

use bmsfw_core::staging::{
    ChunkOutcome, Sha256Digest, StagingArea, StagingConfig, StagingError, UploadAnnouncement,
};
use common::{TestInspector, build_package};
use proptest::prelude::*;
use std::collections::HashSet;
use std::fs;
use std::path::Path;

const PRODUCT: &str = "AX-5";

fn area(dir: &Path) -> StagingArea {
    let mut config = StagingConfig::new(dir);
    config.free_space_margin = 0;
    StagingArea::open(config).unwrap()
}

fn announce(bytes: &[u8], chunk: u32) -> UploadAnnouncement {
    UploadAnnouncement::new(
        "ax5.bin".into(),
        bytes.len() as u64,
        chunk,
        Sha256Digest::of(bytes),
    )
    .unwrap()
}

fn chunk(bytes: &[u8], ann: &UploadAnnouncement, i: u32) -> Vec<u8> {
    let start = ann.chunk_offset(i) as usize;
    let len = ann.chunk_len(i).unwrap() as usize;
    bytes[start..start + len].to_vec()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn in_order_upload_is_staged_with_its_plugin_info() {
    let dir = tempfile::tempdir().unwrap();
    let area = area(dir.path());
    let bytes = build_package(PRODUCT, [4, 15], 5000, 1);
    let ann = announce(&bytes, 512);
    let mut upload = area.begin(&ann).unwrap();
    assert_eq!(upload.first_missing(), Some(0));
    for i in 0..ann.chunk_count() {
        assert_eq!(
            upload.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap(),
            ChunkOutcome::Stored
        );
    }
    assert_eq!(upload.progress().get(), 100);
    assert_eq!(upload.received_bytes(), bytes.len() as u64);
    let staged = upload.finish(&TestInspector::for_product(PRODUCT)).unwrap();
    assert_eq!(staged.sha256(), Sha256Digest::of(&bytes));
    assert_eq!(staged.size(), bytes.len() as u64);
    assert_eq!(staged.file_name(), "ax5.bin");
    assert_eq!(staged.package().version.display, "v4.15");
    assert_eq!(staged.package().version.raw, vec![4, 15]);
    assert_eq!(fs::read(staged.path()).unwrap(), bytes);
    assert!(staged.path().starts_with(dir.path().join("packages")));
    assert!(files_in(&dir.path().join("incoming")).is_empty());
    assert!(area.is_staged(&ann.sha256()));
}

#[test]
fn duplicates_and_out_of_order_chunks_assemble_the_same_package() {
    let dir = tempfile::tempdir().unwrap();
    let area = area(dir.path());
    let bytes = build_package(PRODUCT, [1, 0], 3000, 2);
    let ann = announce(&bytes, 256);
    let n = ann.chunk_count();
    let mut upload = area.begin(&ann).unwrap();
    let order: Vec<u32> = (0..n).rev().chain([0, n - 1, 3]).collect();
    let mut stored = 0;
    for i in order {
        match upload.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap() {
            ChunkOutcome::Stored => stored += 1,
            ChunkOutcome::Duplicate => {}
        }
    }
    assert_eq!(stored, n);
    let staged = upload.finish(&TestInspector::for_product(PRODUCT)).unwrap();
    assert_eq!(fs::read(staged.path()).unwrap(), bytes);
}

#[test]
fn out_of_range_and_wrong_length_chunks_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let area = area(dir.path());
    let bytes = build_package(PRODUCT, [1, 0], 1000, 3);
    let ann = announce(&bytes, 256);
    let n = ann.chunk_count();
    let mut upload = area.begin(&ann).unwrap();

    let err = upload.accept_chunk(n, &[0; 256]).unwrap_err();
    assert!(
        matches!(err, StagingError::ChunkOutOfRange { index, chunk_count } if index == n && chunk_count == n)
    );
    assert_eq!(err.code(), 703);
    assert_eq!(upload.accept_chunk(u32::MAX, &[]).unwrap_err().code(), 703);

    let short = upload.accept_chunk(0, &[0; 255]).unwrap_err();
    assert!(matches!(
        short,
        StagingError::ChunkWrongLength {
            index: 0,
            expected: 256,
            actual: 255
        }
    ));
    assert_eq!(short.code(), 704);
    assert_eq!(upload.accept_chunk(0, &[0; 257]).unwrap_err().code(), 704);
    // The last chunk carries the remainder only.
    let last_len = ann.chunk_len(n - 1).unwrap();
    assert!(last_len < 256);
    assert_eq!(
        upload.accept_chunk(n - 1, &[0; 256]).unwrap_err().code(),
        704
    );

    assert_eq!(upload.first_missing(), Some(0));
    assert_eq!(upload.received_bytes(), 0);
    for i in 0..n {
        upload.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap();
    }
    let staged = upload.finish(&TestInspector::for_product(PRODUCT)).unwrap();
    assert_eq!(fs::read(staged.path()).unwrap(), bytes);
}

#[test]
fn a_package_with_the_wrong_digest_is_deleted_never_staged() {
    let dir = tempfile::tempdir().unwrap();
    let area = area(dir.path());
    let bytes = build_package(PRODUCT, [1, 0], 1000, 4);
    let ann = announce(&bytes, 256);
    let mut upload = area.begin(&ann).unwrap();
    let mut tampered = bytes.clone();
    tampered[500] ^= 0x01;
    for i in 0..ann.chunk_count() {
        upload.accept_chunk(i, &chunk(&tampered, &ann, i)).unwrap();
    }
    let err = upload
        .finish(&TestInspector::for_product(PRODUCT))
        .unwrap_err();
    assert_eq!(err.code(), 705);
    match err {
        StagingError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, Sha256Digest::of(&bytes));
            assert_eq!(actual, Sha256Digest::of(&tampered));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(files_in(&dir.path().join("incoming")).is_empty());
    assert!(files_in(&dir.path().join("packages")).is_empty());
    // A fresh attempt starts from the first chunk.
    assert_eq!(area.begin(&ann).unwrap().first_missing(), Some(0));
}

#[test]
fn finishing_early_names_the_first_missing_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let area = area(dir.path());
    let bytes = build_package(PRODUCT, [1, 0], 1000, 5);
    let ann = announce(&bytes, 256);
    let mut upload = area.begin(&ann).unwrap();
    upload.accept_chunk(0, &chunk(&bytes, &ann, 0)).unwrap();
    upload.accept_chunk(2, &chunk(&bytes, &ann, 2)).unwrap();
    let err = upload
        .finish(&TestInspector::for_product(PRODUCT))
        .unwrap_err();
    assert!(matches!(
        err,
        StagingError::Incomplete {
            first_missing: 1,
            ..
        }
    ));
    assert_eq!(err.code(), 708);
}

#[test]
fn a_package_its_plugin_refuses_is_deleted_with_the_plugins_code() {
    let dir = tempfile::tempdir().unwrap();
    let area = area(dir.path());
    let bytes = build_package("OTHER-9", [1, 0], 600, 6);
    let ann = announce(&bytes, 256);
    let mut upload = area.begin(&ann).unwrap();
    for i in 0..ann.chunk_count() {
        upload.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap();
    }
    let err = upload
        .finish(&TestInspector::for_product(PRODUCT))
        .unwrap_err();
    assert_eq!(err.code(), 761);
    assert!(err.to_string().contains("OTHER-9"), "{err}");
    assert!(files_in(&dir.path().join("incoming")).is_empty());
    assert!(files_in(&dir.path().join("packages")).is_empty());
}

#[test]
fn size_limit_and_free_space_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = build_package(PRODUCT, [1, 0], 2000, 7);
    let ann = announce(&bytes, 256);

    let mut config = StagingConfig::new(dir.path());
    config.max_package_size = bytes.len() as u64 - 1;
    let small = StagingArea::open(config).unwrap();
    let err = small.begin(&ann).unwrap_err();
    assert!(matches!(err, StagingError::TooLarge { .. }));
    assert_eq!(err.code(), 701);

    let mut config = StagingConfig::new(dir.path());
    config.free_space_margin = u64::MAX / 2;
    let full = StagingArea::open(config).unwrap();
    let err = full.begin(&ann).unwrap_err();
    match &err {
        StagingError::InsufficientSpace {
            needed, available, ..
        } => {
            assert_eq!(*needed, u64::MAX / 2 + bytes.len() as u64);
            assert!(available < needed);
        }
        other => panic!("expected insufficient space, got {other:?}"),
    }
    assert_eq!(err.code(), 702);
    assert!(files_in(&dir.path().join("incoming")).is_empty());
}

/// The GX restarts mid-upload: the partial upload survives, the link asks for the first
/// missing chunk, and the package completes from there.
#[test]
fn restart_mid_upload_resumes_from_the_first_missing_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = build_package(PRODUCT, [2, 1], 4000, 8);
    let ann = announce(&bytes, 256);
    {
        let area = area(dir.path());
        let mut upload = area.begin(&ann).unwrap();
        for i in [0, 1, 2, 5, 9] {
            upload.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap();
        }
        assert_eq!(upload.first_missing(), Some(3));
        // Power cut: nothing is closed or flushed on purpose.
        std::mem::forget(upload);
    }
    let area = area(dir.path());
    let mut upload = area.begin(&ann).unwrap();
    assert_eq!(upload.first_missing(), Some(3));
    assert!(upload.has_chunk(5) && upload.has_chunk(9) && !upload.has_chunk(4));
    assert_eq!(upload.received_bytes(), 5 * 256);
    assert_eq!(
        upload.accept_chunk(5, &chunk(&bytes, &ann, 5)).unwrap(),
        ChunkOutcome::Duplicate
    );
    // The link's resume: ask for the first missing chunk until none is (bounded: each
    // round must store a chunk).
    let mut rounds = 0;
    while let Some(i) = upload.first_missing() {
        assert_eq!(
            upload.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap(),
            ChunkOutcome::Stored,
            "chunk {i} was asked for again"
        );
        rounds += 1;
        assert!(rounds <= ann.chunk_count());
    }
    assert_eq!(rounds, ann.chunk_count() - 5);
    let staged = upload.finish(&TestInspector::for_product(PRODUCT)).unwrap();
    assert_eq!(fs::read(staged.path()).unwrap(), bytes);
}

#[test]
fn damaged_or_mismatched_upload_state_restarts_the_upload_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = build_package(PRODUCT, [2, 1], 2000, 9);
    let ann = announce(&bytes, 256);
    let sha = ann.sha256();
    let state = dir.path().join(format!("incoming/{sha}.upload"));
    for damage in [
        b"garbage".to_vec(),
        Vec::new(),
        vec![b'{'; 100 * 1024],
        br#"{"format":1,"announcement":{"file_name":"x","size":1,"chunk_size":1,"sha256":"00"},"received":"ff"}"#.to_vec(),
    ] {
        let area = area(dir.path());
        let mut upload = area.begin(&ann).unwrap();
        upload.accept_chunk(0, &chunk(&bytes, &ann, 0)).unwrap();
        drop(upload);
        fs::write(&state, &damage).unwrap();
        let upload = area.begin(&ann).unwrap();
        assert_eq!(upload.first_missing(), Some(0));
        assert_eq!(upload.received_bytes(), 0);
    }
    // The same package announced with another chunk size starts over too.
    let area = area(dir.path());
    let mut upload = area.begin(&ann).unwrap();
    upload.accept_chunk(0, &chunk(&bytes, &ann, 0)).unwrap();
    drop(upload);
    let other = announce(&bytes, 128);
    let mut upload = area.begin(&other).unwrap();
    assert_eq!(upload.first_missing(), Some(0));
    for i in 0..other.chunk_count() {
        upload.accept_chunk(i, &chunk(&bytes, &other, i)).unwrap();
    }
    upload.finish(&TestInspector::for_product(PRODUCT)).unwrap();
}

#[test]
fn an_interrupted_state_write_leaves_the_previous_bitmap() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = build_package(PRODUCT, [2, 1], 2000, 10);
    let ann = announce(&bytes, 256);
    let area = area(dir.path());
    let mut upload = area.begin(&ann).unwrap();
    upload.accept_chunk(0, &chunk(&bytes, &ann, 0)).unwrap();
    drop(upload);
    let tmp = dir
        .path()
        .join(format!("incoming/{}.upload.tmp", ann.sha256()));
    fs::write(&tmp, b"{\"format\":1,\"announ").unwrap();
    let upload = area.begin(&ann).unwrap();
    assert_eq!(upload.first_missing(), Some(1));
    drop(upload);
    let removed = area
        .collect_garbage(&HashSet::from([ann.sha256()]))
        .unwrap();
    assert_eq!(removed, vec![tmp]);
}

#[test]
fn staged_packages_are_verified_again_before_stage_two() {
    let dir = tempfile::tempdir().unwrap();
    let area = area(dir.path());
    let inspector = TestInspector::for_product(PRODUCT);
    let bytes = build_package(PRODUCT, [3, 0], 1500, 11);
    let ann = announce(&bytes, 512);
    let mut upload = area.begin(&ann).unwrap();
    for i in 0..ann.chunk_count() {
        upload.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap();
    }
    let path = upload.finish(&inspector).unwrap().path().to_path_buf();

    // After a restart: found and verified again.
    let again = area.staged(&ann, &inspector).unwrap();
    assert_eq!(again.path(), path);
    assert_eq!(again.package().version.display, "v3.00");
    // Announcing it again needs no new upload.
    let repeat = area.begin(&ann).unwrap();
    assert!(repeat.is_complete());
    assert_eq!(repeat.finish(&inspector).unwrap().path(), path);

    // Altered on disk: refused with 709 and deleted.
    let mut altered = bytes.clone();
    altered[100] ^= 0xFF;
    fs::write(&path, &altered).unwrap();
    let err = area.staged(&ann, &inspector).unwrap_err();
    assert_eq!(err.code(), 709);
    assert!(!path.exists());
    let err = area.staged(&ann, &inspector).unwrap_err();
    assert_eq!(err.code(), 709, "{err}");
}

#[test]
fn garbage_collection_keeps_what_jobs_use() {
    let dir = tempfile::tempdir().unwrap();
    let area = area(dir.path());
    let inspector = TestInspector::for_product(PRODUCT);
    let kept_bytes = build_package(PRODUCT, [1, 0], 700, 12);
    let kept = announce(&kept_bytes, 256);
    let mut upload = area.begin(&kept).unwrap();
    for i in 0..kept.chunk_count() {
        upload
            .accept_chunk(i, &chunk(&kept_bytes, &kept, i))
            .unwrap();
    }
    upload.finish(&inspector).unwrap();
    let partial_bytes = build_package(PRODUCT, [1, 1], 700, 13);
    let partial = announce(&partial_bytes, 256);
    area.begin(&partial)
        .unwrap()
        .accept_chunk(0, &chunk(&partial_bytes, &partial, 0))
        .unwrap();
    let orphan_bytes = build_package(PRODUCT, [1, 2], 700, 14);
    let orphan = announce(&orphan_bytes, 256);
    area.begin(&orphan).unwrap();
    fs::write(dir.path().join("packages/README"), b"not ours").unwrap();

    let removed = area
        .collect_garbage(&HashSet::from([kept.sha256(), partial.sha256()]))
        .unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(area.is_staged(&kept.sha256()));
    assert_eq!(area.begin(&partial).unwrap().first_missing(), Some(1));
    assert_eq!(area.begin(&orphan).unwrap().first_missing(), Some(0));
    assert!(dir.path().join("packages/README").exists());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Any arrival order with any repeats assembles exactly the uploaded bytes.
    #[test]
    fn any_order_with_repeats_yields_the_original(
        image_len in 1usize..1500,
        chunk_size in 64u32..400,
        seed in any::<u8>(),
        order in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let area = area(dir.path());
        let bytes = build_package(PRODUCT, [1, 0], image_len, seed);
        let ann = announce(&bytes, chunk_size);
        let n = ann.chunk_count() as usize;
        let mut upload = area.begin(&ann).unwrap();
        for pick in order {
            let i = pick.index(n) as u32;
            upload.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap();
        }
        // Bounded: each missing chunk is asked for once.
        for _ in 0..n {
            let Some(i) = upload.first_missing() else { break };
            prop_assert_eq!(
                upload.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap(),
                ChunkOutcome::Stored
            );
        }
        prop_assert_eq!(upload.first_missing(), None);
        let staged = upload.finish(&TestInspector::for_product(PRODUCT)).unwrap();
        prop_assert_eq!(fs::read(staged.path()).unwrap(), bytes);
    }
}

/// One file uploaded for two updates at once (two batteries, one package): the second
/// begin joins the first upload, so each sees the other's chunks and the file is written
/// once; both finish to the same staged package.
#[test]
fn a_second_update_of_the_same_file_joins_the_upload_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let area = area(dir.path());
    let bytes = build_package(PRODUCT, [2, 1], 3000, 5);
    let ann = announce(&bytes, 256);
    let n = ann.chunk_count();
    let mut first = area.begin(&ann).unwrap();
    for i in 0..2 {
        first.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap();
    }
    let mut second = area.begin(&ann).unwrap();
    assert!(second.has_chunk(0) && second.has_chunk(1));
    assert!(!second.has_chunk(2));
    assert_eq!(second.first_missing(), Some(2));
    assert_eq!(second.received_bytes(), 512);
    assert_eq!(
        second.accept_chunk(1, &chunk(&bytes, &ann, 1)).unwrap(),
        ChunkOutcome::Duplicate
    );
    for i in 2..n {
        second.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap();
    }
    assert!(first.is_complete());
    assert_eq!(first.first_missing(), None);
    assert_eq!(first.received_bytes(), bytes.len() as u64);
    let inspector = TestInspector::for_product(PRODUCT);
    let a = first.finish(&inspector).unwrap();
    let b = second.finish(&inspector).unwrap();
    assert_eq!(a.path(), b.path());
    assert_eq!(fs::read(b.path()).unwrap(), bytes);
    assert!(files_in(&dir.path().join("incoming")).is_empty());
}

/// A second update of a file in progress must send it with the same size and chunk size:
/// another chunk size, or another size for the same digest, is refused (700) and leaves
/// the upload in progress as it was.
#[test]
fn joining_with_other_geometry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let area = area(dir.path());
    let bytes = build_package(PRODUCT, [2, 2], 3000, 6);
    let ann = announce(&bytes, 256);
    let mut first = area.begin(&ann).unwrap();
    first.accept_chunk(0, &chunk(&bytes, &ann, 0)).unwrap();
    let other_chunk = announce(&bytes, 512);
    let other_size =
        UploadAnnouncement::new("ax5.bin".into(), 2000, 256, Sha256Digest::of(&bytes)).unwrap();
    for other in [other_chunk, other_size] {
        let e = area.begin(&other).unwrap_err();
        assert_eq!(e.code(), 700, "{e}");
        assert!(e.to_string().contains("same chunk size"), "{e}");
    }
    assert_eq!(first.first_missing(), Some(1));
}

/// Once the upload that staged a file is finished, a new update of it comes back complete;
/// after the staged package is removed, a new update starts afresh although an upload
/// of it is still held, and nothing of the upload that ended is tracked any more.
#[test]
fn after_staging_a_new_update_reuses_the_package_or_starts_afresh_once_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let area = area(dir.path());
    let bytes = build_package(PRODUCT, [2, 3], 2000, 7);
    let ann = announce(&bytes, 256);
    let mut first = area.begin(&ann).unwrap();
    let held = area.begin(&ann).unwrap();
    for i in 0..ann.chunk_count() {
        first.accept_chunk(i, &chunk(&bytes, &ann, i)).unwrap();
    }
    first.finish(&TestInspector::for_product(PRODUCT)).unwrap();
    let again = area.begin(&ann).unwrap();
    assert!(again.is_complete());
    assert_eq!(again.first_missing(), None);
    drop(again);
    area.remove(&ann.sha256()).unwrap();
    let fresh = area.begin(&ann).unwrap();
    assert_eq!(fresh.first_missing(), Some(0));
    assert_eq!(fresh.received_bytes(), 0);
    assert!(!fresh.is_complete());
    drop((held, fresh));
    // Uploads no one holds any more are forgotten at the next begin.
    let other = build_package(PRODUCT, [2, 4], 1000, 8);
    let _next = area.begin(&announce(&other, 256)).unwrap();
    assert_eq!(area.uploads_tracked(), 1);
}

/// The catalogue code each staging error carries: the link reports these numbers to the
/// portal, which explains each one to the installer.
#[test]
fn each_staging_error_carries_its_catalogue_code() {
    use std::path::PathBuf;
    let sha256 = Sha256Digest::of(b"x");
    let io = || std::io::Error::other("disk");
    let cases: Vec<(StagingError, u32)> = vec![
        (
            StagingError::InvalidAnnouncement {
                field: "size",
                reason: "zero".into(),
            },
            700,
        ),
        (StagingError::TooLarge { size: 2, max: 1 }, 701),
        (
            StagingError::InsufficientSpace {
                path: PathBuf::from("/s"),
                needed: 2,
                available: 1,
            },
            702,
        ),
        (StagingError::Discarded { sha256 }, 705),
        (
            StagingError::Io {
                op: "write",
                path: PathBuf::from("/s"),
                source: io(),
            },
            706,
        ),
    ];
    for (error, code) in cases {
        assert_eq!(error.code(), code, "{error}");
    }
}
