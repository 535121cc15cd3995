//! What the master's refusals, failures and versions mean for the installer
//! (`PROTOCOL.md` section 9).

use crate::bundle::Bundle;
use crate::frames::{self, ModuleEntry};
use crate::protocol::code;
use bmsfw_plugin_api::{ErrorCode, Failure};

/// A module state in words.
fn state_name(state: u8) -> &'static str {
    match state {
        0 => "pending",
        1 => "updating",
        2 => "done",
        3 => "failed",
        4 => "skipped",
        _ => "in an unknown state",
    }
}

/// A master or module error code in words.
pub(super) fn error_name(error: u8) -> String {
    match error {
        code::MODULE_SILENT => "it did not answer on the pack's internal bus".into(),
        code::MODULE_REFUSED => "it refused its image (its own check failed)".into(),
        code::MODULE_FLASH => "writing its flash failed".into(),
        code::MODULE_NO_RESTART => "it did not restart into the new version".into(),
        code::MODULE_FAILED => "a module failed".into(),
        code::MASTER_FLASH => "writing the master's own image failed".into(),
        other => format!("error 0x{other:02X}"),
    }
}

/// `module 1 done, runs v2.04 (build 01); module 2 failed (...) ...` for every module.
pub(super) fn module_summary(_bundle: &Bundle, entries: &[ModuleEntry]) -> String {
    let parts: Vec<String> = entries
        .iter()
        .skip(1)
        .map(|e| {
            let mut s = format!("module {} {}", e.index, state_name(e.state));
            if e.state == 3 && e.error != 0 {
                s.push_str(&format!(" ({})", error_name(e.error)));
            }
            s.push_str(&format!(", runs {}", e.version));
            s
        })
        .collect();
    parts.join("; ")
}

/// A refusal `EE OP CC`.
pub(super) fn refusal(opcode: u8, refused: u8) -> Failure {
    let what = frames::name(opcode);
    let why = match refused {
        code::UNKNOWN_COMMAND => "it does not know the command".to_owned(),
        code::OUT_OF_SEQUENCE => "the command came out of sequence".to_owned(),
        code::BAD_LENGTH => "the bundle's length is 0 or larger than its staging area".to_owned(),
        code::BUSY_INSTALLING => {
            "it is still installing an earlier bundle or updating its modules; retry once it \
             is done"
                .to_owned()
        }
        code::NO_SUCH_MODULE => "the update names a module the pack does not have".to_owned(),
        other => format!("code 0x{other:02X}"),
    };
    Failure::new(
        ErrorCode::REJECTED_BY_BMS,
        format!("the master refused {what}: {why}"),
    )
}

/// END refused: the master's check of the received bundle failed.
pub(super) fn check_refused(
    bundle: &Bundle,
    entries: &[ModuleEntry],
    result: u8,
    detail: u8,
) -> Failure {
    let verification = |what: String| {
        Failure::new(
            ErrorCode::VERIFICATION_FAILED,
            format!(
                "Verification failed: the master found {what} and keeps its firmware; obtain \
                 a new copy of the bundle from Coral and retry"
            ),
        )
    };
    match result {
        code::LAYOUT => verification("the received bundle's layout invalid".into()),
        code::SIGNATURE => verification("the received bundle's signature invalid".into()),
        code::IMAGE_HASH => verification(match bundle.images.get(usize::from(detail)) {
            Some(image) => format!("{} of the received bundle damaged", image.describe()),
            None => format!("image {detail} of the received bundle damaged"),
        }),
        code::PRODUCT => Failure::new(
            ErrorCode::PACKAGE_WRONG_PRODUCT,
            "the master refused the bundle: it is for another ReefStack model",
        ),
        code::MODULE_REVISION => {
            let hw = entries
                .get(usize::from(detail))
                .map(|e| format!(" (hardware revision {})", e.hw_revision))
                .unwrap_or_default();
            Failure::new(
                ErrorCode::PACKAGE_WRONG_PRODUCT,
                format!("the master refused the bundle: it has no image for module {detail}{hw}"),
            )
        }
        code::MASTER_REVISION => Failure::new(
            ErrorCode::PACKAGE_WRONG_PRODUCT,
            "the master refused the bundle: its master image is for another hardware revision",
        ),
        other => Failure::new(
            ErrorCode::VERIFICATION_FAILED,
            format!("Verification failed: the master refused the bundle (code 0x{other:02X})"),
        ),
    }
}

/// The master reports a failed installation.
pub(super) fn install_failed(bundle: &Bundle, entries: &[ModuleEntry]) -> Failure {
    let master = entries[0];
    let failed: Vec<&ModuleEntry> = entries.iter().skip(1).filter(|e| e.state == 3).collect();
    if let Some(first) = failed.first() {
        let n = entries.len() - 1;
        return Failure::new(
            ErrorCode::MODULE_UPDATE_FAILED,
            format!(
                "module {} of {n} failed: {}; the master keeps {} and discards its new image. \
                 {}. Retry the update: modules already updated are skipped",
                first.index,
                error_name(first.error),
                master.version,
                module_summary(bundle, entries)
            ),
        );
    }
    Failure::new(
        ErrorCode::INSTALL_FAILED,
        format!(
            "the master could not install the update ({}); it keeps {}. {}",
            error_name(master.error),
            master.version,
            module_summary(bundle, entries)
        ),
    )
}

/// After the restart: the master and every selected module run the bundle's versions.
pub(super) fn verify(
    bundle: &Bundle,
    entries: &[ModuleEntry],
    selected: impl Fn(u8) -> bool,
) -> Result<(), Failure> {
    let master = entries[0];
    if master.version != bundle.version {
        return Err(Failure::new(
            ErrorCode::VERSION_MISMATCH,
            format!(
                "the master runs {} after the restart; the bundle is {}",
                master.version, bundle.version
            ),
        ));
    }
    for e in entries.iter().skip(1).filter(|e| selected(e.index)) {
        let Some(image) = bundle.module_image(e.hw_revision) else {
            return Err(Failure::new(
                ErrorCode::VERSION_MISMATCH,
                format!(
                    "module {} is hardware revision {}, for which the bundle has no image",
                    e.index, e.hw_revision
                ),
            ));
        };
        if e.version != image.version {
            return Err(Failure::new(
                ErrorCode::VERSION_MISMATCH,
                format!(
                    "module {} runs {} after the update; {} is {}. {}",
                    e.index,
                    e.version,
                    image.describe(),
                    image.version,
                    module_summary(bundle, entries)
                ),
            ));
        }
    }
    Ok(())
}
