//! `bmsfw plugin`: what integrators use to review and approve vendor plugins.
//!
//! - `bmsfw plugin check <library>` hashes the file (without opening it), prints its
//!   SHA-256 and the allowlist's verdict. The allowlist is `--allowlist`, or that of the
//!   GX configuration `--config` (by default `config/gx.toml`, else
//!   `/data/conf/bmsfw/gx.toml`); without one the library is still hashed and checked,
//!   and the command says what it needs (status 2). Only when the allowlist approves the hash is
//!   the library opened (as the daemon would) to check its contract version, layout and
//!   identity. An unapproved library is opened only with `--open-unapproved`, meant for
//!   a review machine: opening runs the library's constructors. A ready-to-paste
//!   allowlist entry is printed whenever the identity is known.
//! - `bmsfw plugin list` loads the plugin directory of a `gx.toml` exactly as the daemon
//!   does and prints every library's verdict.
//! - `bmsfw plugin conformance <library>` puts a library through hostile conditions on
//!   the simulated bus (see [`super::conformance`]).
//!
//! Exit status: 0 when the library (every library, for `list`) is approved and loads,
//! 1 when one is refused, 2 for usage or configuration errors (an allowlist that cannot
//! be read included: the daemon would run without plugins).
//!
//! File names are printed escaped (`bmsfw_core::plugin::display_path`): a name holding a
//! newline or other control characters cannot start a line of its own.

use anyhow::Context;
use bmsfw_core::config::GxConfig;
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::plugin::allowlist::{
    Approval, ApprovalDate, ApprovalStatus, ApprovedProduct, FirmwareRange,
};
use bmsfw_core::plugin::{
    Allowlist, AllowlistEntry, LibraryFile, PluginInfo, PluginLoader, Refusal, RefusalReason,
    VendorPlugin, display_name, display_path, one_line,
};
use bmsfw_plugin_api::CONTRACT_VERSION;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `bmsfw plugin ...`
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Hash a plugin library, give the allowlist's verdict and print an allowlist entry.
    Check(CheckArgs),
    /// Show every library of the plugin directory with its verdict.
    List(ListArgs),
    /// Put a plugin library through hostile conditions on the simulated bus (before it
    /// is approved) and print a pass/fail table.
    Conformance(super::conformance::ConformanceArgs),
}

/// Arguments of `bmsfw plugin check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The plugin library file.
    library: PathBuf,
    /// The allowlist to check against (default: the `[plugins] allowlist` of --config).
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    allowlist: Option<PathBuf>,
    /// The GX configuration whose allowlist to check against (default: config/gx.toml
    /// in this folder, else /data/conf/bmsfw/gx.toml, when one exists).
    #[arg(long, value_name = "GX_TOML")]
    config: Option<PathBuf>,
    /// Open the library even when the allowlist does not approve it, to read its
    /// identity. Its constructors run: use this on a review machine only.
    #[arg(long)]
    open_unapproved: bool,
    /// For the printed entry: a product the plugin may update, as
    /// MANUFACTURER or MANUFACTURER:CODE[,CODE...] (codes in hex with 0x, or decimal).
    /// Repeat for several products.
    #[arg(long = "product", value_name = "PRODUCT", value_parser = parse_product)]
    products: Vec<ApprovedProduct>,
    /// For the printed entry: the battery firmware range, FROM..TO (inclusive).
    #[arg(long, value_name = "FROM..TO", value_parser = parse_firmware)]
    firmware: Option<FirmwareRange>,
}

/// Arguments of `bmsfw plugin list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// The GX configuration naming the plugin directory and the allowlist (default:
    /// config/gx.toml in this folder, else /data/conf/bmsfw/gx.toml).
    #[arg(long, value_name = "GX_TOML")]
    config: Option<PathBuf>,
}

/// Runs a `bmsfw plugin` command. Configuration and I/O errors are printed here and end
/// with status 2, so that 1 always means "refused".
pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    let result = match command {
        PluginCommand::Check(args) => check(args),
        PluginCommand::List(args) => list(args),
        PluginCommand::Conformance(args) => return super::conformance::run(args),
    };
    Ok(result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    }))
}

fn parse_product(s: &str) -> Result<ApprovedProduct, String> {
    let (manufacturer, codes) = match s.split_once(':') {
        Some((m, codes)) => (m, Some(codes)),
        None => (s, None),
    };
    if manufacturer.is_empty() {
        return Err("the manufacturer is empty".into());
    }
    let product_codes = codes
        .map(|codes| {
            codes
                .split(',')
                .map(|c| {
                    let c = c.trim();
                    match c.strip_prefix("0x").or_else(|| c.strip_prefix("0X")) {
                        Some(hex) => u16::from_str_radix(hex, 16),
                        None => c.parse(),
                    }
                    .map_err(|_| format!("product code {c:?} is not a 16-bit number"))
                })
                .collect::<Result<Vec<u16>, String>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(ApprovedProduct {
        manufacturer: manufacturer.to_owned(),
        product_codes,
    })
}

fn parse_firmware(s: &str) -> Result<FirmwareRange, String> {
    let (from, to) = s
        .split_once("..")
        .ok_or_else(|| format!("expected FROM..TO, got {s:?}"))?;
    let from: DottedVersion = from.parse().map_err(|e| format!("{e}"))?;
    let to: DottedVersion = to.parse().map_err(|e| format!("{e}"))?;
    if from > to {
        return Err(format!("the range {from}..{to} is empty"));
    }
    Ok(FirmwareRange { from, to })
}

/// Prints `label: value` aligned.
pub(super) fn field(label: &str, value: impl std::fmt::Display) {
    outln!("{:<12} {value}", format!("{label}:"));
}

/// Reads the library at `path` and prints its path, size and SHA-256, or prints why it
/// was refused and returns `None`.
pub(super) fn read_library(loader: &PluginLoader, path: &Path) -> Option<LibraryFile> {
    match loader.read_file(path) {
        Ok(file) => {
            field("library", display_path(&file.path));
            field("size", format!("{} bytes", file.size()));
            field("sha256", file.sha256);
            Some(file)
        }
        Err(refusal) => {
            field("library", display_path(path));
            print_refusal(&refusal.reason);
            None
        }
    }
}

pub(super) fn print_refusal(reason: &RefusalReason) {
    field(
        "verdict",
        format!("REFUSED by the {} check", reason.check()),
    );
    field("reason", one_line(&reason.to_string()));
    field("what to do", reason.remedy());
}

pub(super) fn print_identity(info: &PluginInfo) {
    let ranges = |r: &[bmsfw_plugin_api::CanIdRange]| {
        if r.is_empty() {
            "none".to_owned()
        } else {
            r.iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    field("plugin", &info.name);
    field("vendor id", &info.vendor_id);
    field("version", &info.version);
    field(
        "contract",
        format!("{} (this engine: {CONTRACT_VERSION})", info.contract),
    );
    field("sends", ranges(&info.sends));
    field("receives", ranges(&info.receives));
    field("file types", info.file_types.join(", "));
    let t = &info.timeouts;
    field(
        "timeouts",
        format!(
            "response {} ms transferring, {} ms installing, {} ms verifying; \
             silence while restarting {} ms; install {} ms",
            t.transfer_response_ms,
            t.install_response_ms,
            t.verify_response_ms,
            t.restart_silence_max_ms,
            t.install_max_ms
        ),
    );
}

/// Today's date (UTC), for a new entry's review and compliance dates.
fn today() -> ApprovalDate {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
    ApprovalDate::new(year, month, day)
        .unwrap_or_else(|| ApprovalDate::new(1970, 1, 1).expect("1970-01-01 is a date"))
}

/// The entry to paste for `file` with identity `info`: the products and firmware range
/// from the command line, else from the allowlist's latest entry of the same vendor.
fn new_entry(
    file: &LibraryFile,
    info: &PluginInfo,
    allowlist: &Allowlist,
    args: &CheckArgs,
) -> Result<AllowlistEntry, &'static str> {
    let previous = allowlist
        .entries()
        .iter()
        .rev()
        .find(|e| e.vendor_id == info.vendor_id);
    let products = if !args.products.is_empty() {
        args.products.clone()
    } else if let Some(p) = previous {
        p.products.clone()
    } else {
        return Err("--product (the products the review approves)");
    };
    let firmware = match (&args.firmware, previous) {
        (Some(f), _) => f.clone(),
        (None, Some(p)) => p.firmware.clone(),
        (None, None) => return Err("--firmware (the battery firmware range it may update)"),
    };
    let pending = Approval {
        status: ApprovalStatus::Pending,
        date: today(),
        by: String::new(),
    };
    Ok(AllowlistEntry {
        vendor_id: info.vendor_id.clone(),
        file: file.file_name.clone(),
        sha256: file.sha256,
        versions: format!("={}", info.version)
            .parse()
            .map_err(|_| "a version requirement for this exact version")?,
        products,
        firmware,
        review: pending.clone(),
        compliance: pending,
        notes: format!("{} {}", info.name, info.version),
    })
}

/// Where `plugin check` looks for a GX configuration when neither --allowlist nor
/// --config is given: a development tree's, then a GX device's.
const GX_CONFIG_CANDIDATES: [&str; 2] = ["config/gx.toml", "/data/conf/bmsfw/gx.toml"];

/// The allowlist `plugin check` uses, and where it was found; `Err` says why there is
/// none, in one line (the operating system's reason once).
fn find_allowlist(args: &CheckArgs) -> Result<(Allowlist, String), String> {
    let path = if let Some(path) = &args.allowlist {
        path.clone()
    } else {
        let config = match &args.config {
            Some(c) => c.clone(),
            None => GX_CONFIG_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    format!(
                        "no allowlist to give a verdict: pass --allowlist FILE, or --config \
                         GX_TOML for the daemon's (none of {} exists)",
                        GX_CONFIG_CANDIDATES.join(", ")
                    )
                })?,
        };
        let gx = GxConfig::load(&config).map_err(|e| {
            format!("the GX configuration could not be read, so neither could its allowlist: {e}")
        })?;
        gx.plugins.allowlist
    };
    let allowlist =
        Allowlist::load(&path).map_err(|e| format!("the allowlist could not be read: {e}"))?;
    let from = match (&args.allowlist, &args.config) {
        (Some(_), _) => display_path(&path).to_string(),
        _ => format!("{} (of the GX configuration)", display_path(&path)),
    };
    Ok((allowlist, from))
}

/// `plugin check` without an allowlist: the hash, the ELF check and, with
/// --open-unapproved, the identity and an entry to paste; then why there is no verdict.
fn check_without_allowlist(args: &CheckArgs, why: &str) -> ExitCode {
    let empty = Allowlist::parse(Path::new("(none)"), "").expect("an empty allowlist is valid");
    let loader = PluginLoader::new(empty);
    if let Some(file) = read_library(&loader, &args.library) {
        field("allowlist", "none");
        match file.check_elf() {
            Err(reason) => print_refusal(&reason),
            Ok(()) if args.open_unapproved => {
                outln!("opened without an allowlist (--open-unapproved)");
                match loader.open_unvetted(&file) {
                    Ok(plugin) => {
                        print_identity(plugin.info());
                        outln!();
                        match new_entry(&file, plugin.info(), loader.allowlist(), args) {
                            Ok(entry) => {
                                outln!(
                                    "allowlist entry to paste (set review and compliance to \
                                     \"passed\" once they are):"
                                );
                                out!("{}", entry.to_toml());
                            }
                            Err(missing) => outln!("no allowlist entry printed: pass {missing}"),
                        }
                    }
                    Err(reason) => print_refusal(&reason),
                }
            }
            Ok(()) => {
                field("format", "an ELF shared library for this machine");
                outln!("not opened: no allowlist approves it (see --open-unapproved)");
            }
        }
    }
    eprintln!("error: {why}");
    ExitCode::from(2)
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (allowlist, from) = match find_allowlist(&args) {
        Ok(found) => found,
        Err(why) => return Ok(check_without_allowlist(&args, &why)),
    };
    let loader = PluginLoader::new(allowlist);
    let Some(file) = read_library(&loader, &args.library) else {
        return Ok(ExitCode::from(1));
    };
    field("allowlist", from);

    let (plugin, refusal): (
        Option<std::sync::Arc<dyn VendorPlugin>>,
        Option<RefusalReason>,
    ) = match loader.admit(&file) {
        Ok(entry) => {
            let entry = entry.clone();
            match loader.load_read(&file) {
                Ok(loaded) => {
                    field("verdict", "approved: loads and passes every check");
                    field("entry", format!("{} {}", entry.vendor_id, entry.versions));
                    (Some(loaded.plugin), None)
                }
                Err(refusal) => (None, Some(*refusal.reason)),
            }
        }
        Err(reason) if args.open_unapproved => {
            // The ELF headers are checked before any dynamic loader sees the bytes.
            let opened = file.check_elf().and_then(|()| {
                outln!("opened although not approved (--open-unapproved)");
                loader.open_unvetted(&file)
            });
            match opened {
                Ok(plugin) => (Some(plugin), Some(reason)),
                Err(abi) => {
                    print_refusal(&abi);
                    (None, Some(reason))
                }
            }
        }
        Err(reason) => {
            outln!("not opened: the allowlist does not approve it (see --open-unapproved)");
            (None, Some(reason))
        }
    };
    if let Some(reason) = &refusal {
        print_refusal(reason);
    }
    if let Some(plugin) = &plugin {
        print_identity(plugin.info());
        outln!();
        match new_entry(&file, plugin.info(), loader.allowlist(), &args) {
            Ok(entry) if refusal.is_none() => {
                outln!("allowlist entry (as approved):");
                let approved = loader.allowlist().by_hash(&file.sha256).unwrap_or(&entry);
                out!("{}", approved.to_toml());
            }
            Ok(entry) => {
                outln!(
                    "allowlist entry to paste (set review and compliance to \"passed\" \
                     once they are):"
                );
                out!("{}", entry.to_toml());
            }
            Err(missing) => {
                outln!("no allowlist entry printed: pass {missing}");
            }
        }
    }
    Ok(ExitCode::from(u8::from(refusal.is_some())))
}

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let path = match args.config {
        Some(path) => path,
        None => GX_CONFIG_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no GX configuration: pass --config GX_TOML (none of {} exists)",
                    GX_CONFIG_CANDIDATES.join(", ")
                )
            })?,
    };
    // Errors are formatted with `{e}`: their text already holds the operating system's
    // reason, which the error chain would print a second time.
    let config = GxConfig::load(&path)
        .map_err(|e| anyhow::anyhow!("the GX configuration could not be read: {e}"))?;
    let allowlist = Allowlist::load(&config.plugins.allowlist).map_err(|e| {
        anyhow::anyhow!(
            "the allowlist could not be read (the daemon would run without plugins and refuse \
             every update): {e}"
        )
    })?;
    let loader = PluginLoader::new(allowlist)
        .with_method(config.load_method())
        .with_isolation(config.isolation())
        .with_max_library_bytes(config.plugins.max_library_bytes);
    let report = loader
        .load_dir(&config.plugins.dir)
        .context("the plugin directory could not be listed")?;
    outln!(
        "plugin directory {} (allowlist {})",
        display_path(&config.plugins.dir),
        display_path(loader.allowlist().path())
    );
    enum Line<'a> {
        Loaded(&'a bmsfw_core::plugin::LoadedPlugin),
        Refused(&'a Refusal),
    }
    let mut lines: Vec<(&Path, Line<'_>)> = report
        .loaded
        .iter()
        .map(|l| (l.path.as_path(), Line::Loaded(l)))
        .chain(
            report
                .refused
                .iter()
                .map(|r| (r.path.as_path(), Line::Refused(r))),
        )
        .collect();
    lines.sort_by(|a, b| a.0.cmp(b.0));
    for (path, line) in &lines {
        let name = display_name(path);
        match line {
            Line::Loaded(l) => {
                let info = l.plugin.info();
                outln!(
                    "{name}: loaded {} {} (contract {}), sha256 {}",
                    info.vendor_id,
                    info.version,
                    info.contract,
                    l.sha256
                );
            }
            Line::Refused(r) => {
                let hash = r
                    .sha256
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "-".into());
                outln!(
                    "{name}: REFUSED by the {} check: {}\n    sha256 {hash}\n    what to do: {}",
                    r.reason.check(),
                    one_line(&r.reason.to_string()),
                    r.reason.remedy()
                );
            }
        }
    }
    outln!(
        "{} libraries: {} loaded, {} refused",
        lines.len(),
        report.loaded.len(),
        report.refused.len()
    );
    Ok(ExitCode::from(u8::from(!report.refused.is_empty())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_and_firmware_ranges_parse_from_the_command_line() {
        let p = parse_product("ALPHA:0x0A01,17").unwrap();
        assert_eq!(p.manufacturer, "ALPHA");
        assert_eq!(p.product_codes, vec![0x0A01, 17]);
        assert!(parse_product("ALPHA").unwrap().product_codes.is_empty());
        assert!(parse_product("ALPHA:0x10000").is_err());
        assert!(parse_product(":1").is_err());
        let f = parse_firmware("1.0..1.99").unwrap();
        assert_eq!((f.from.parts(), f.to.parts()), (&[1, 0][..], &[1, 99][..]));
        assert!(parse_firmware("2.0..1.0").is_err());
        assert!(parse_firmware("1.0").is_err());
    }

    #[test]
    fn today_is_a_plausible_date() {
        let d = today().to_string();
        assert_eq!(d.len(), 10, "{d}");
        assert!(d.as_str() >= "2025-01-01", "{d}");
    }
}
