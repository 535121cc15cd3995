//! An allowlist that cannot be parsed does not stop the GX engine: it starts without
//! plugins, monitors its battery, and refuses every update naming the allowlist's
//! problem.

mod engine_common;

use bmsfw_core::config::GxConfig;
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::EngineBuilder;
use bmsfw_core::vrm::{Eligibility, GxEngine};
use engine_common::*;
use std::sync::Arc;

#[tokio::test(start_paused = true)]
async fn a_broken_allowlist_leaves_the_batteries_monitored_and_every_update_refused() {
    let site = Site::new([1, 2]);
    let dir = site.dir.path();
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        bmsfw_test_fixtures::library("alpha"),
        plugins.join("libalpha.so"),
    )
    .unwrap();
    std::fs::write(
        dir.join("allowlist.toml"),
        "[[plugin]]\nvendor_id = \"com.example.alpha\"\nfile = \n",
    )
    .unwrap();
    let config = dir.join("gx.toml");
    std::fs::write(
        &config,
        "portal_id = \"abc\"\nstate_dir = \"state\"\n[plugins]\ndir = \"plugins\"\nallowlist = \"allowlist.toml\"\n",
    )
    .unwrap();
    let gx = GxConfig::load(&config).unwrap();

    let (builder, report) =
        EngineBuilder::from_gx_config(&gx, DottedVersion::from(vec![3, 70])).unwrap();
    assert!(report.loaded.is_empty() && report.refused.is_empty());
    let why = report
        .allowlist_error
        .clone()
        .expect("the error is reported");
    let located = format!("{}:3:", dir.join("allowlist.toml").display());
    assert!(
        why.starts_with("the allowlist could not be read: ") && why.contains(&located),
        "{why}"
    );
    assert!(!why.contains('\n'), "{why}");

    let engine = builder
        .bus(Arc::new(site.bus.attach("gx")))
        .vrm_access(site.vrm.clone())
        .start()
        .unwrap();
    assert_eq!(engine.plugins_unavailable(), Some(why.as_str()));
    assert!(engine.vendors().is_empty());

    // Monitored...
    wait_for_battery(&engine).await;
    let view = engine
        .batteries()
        .await
        .into_iter()
        .find(|b| b.identity.serial == SERIAL)
        .unwrap();
    let Eligibility::NotEligible { code, reason } = &view.eligibility else {
        panic!("{:?}", view.eligibility);
    };
    assert_eq!(*code, 748);
    assert!(reason.contains(&why), "{reason}");

    // ... and every update refused, saying why.
    let package = spkg(1, 5, 500, 5);
    let refusal = engine
        .request_update(request(&package, 4096))
        .await
        .unwrap_err();
    assert_eq!(refusal.code, 748, "{refusal}");
    assert!(
        refusal
            .message
            .contains("no approved update plugin recognises this battery (ALPHA); no plugin is loaded: the allowlist could not be read"),
        "{refusal}"
    );
    assert!(refusal.message.contains(&located), "{refusal}");
    assert!(engine.jobs().await.is_empty());
}

/// The load report of a GX configuration names every plugin that loaded, and the engine
/// runs the same plugins.
#[tokio::test]
async fn the_load_report_names_the_plugins_that_loaded() {
    let site = Site::new([1, 2]);
    let dir = site.dir.path();
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let library = bmsfw_test_fixtures::library("alpha");
    std::fs::copy(&library, plugins.join(library.file_name().unwrap())).unwrap();
    // An unapproved library beside it is refused, not loaded.
    std::fs::copy(
        bmsfw_test_fixtures::library("beta"),
        plugins.join("libbeta.so"),
    )
    .unwrap();
    let entries: String = site
        .allowlist
        .entries()
        .iter()
        .map(|e| e.to_toml())
        .collect();
    std::fs::write(dir.join("allowlist.toml"), entries).unwrap();
    let config = dir.join("gx.toml");
    std::fs::write(
        &config,
        format!(
            "portal_id = \"abc\"\nstate_dir = \"state\"\n[plugins]\ndir = \"plugins\"\n\
             allowlist = \"allowlist.toml\"\n[plugins.host]\nprogram = \"{}\"\n",
            bmsfw_test_fixtures::plugin_host().display()
        ),
    )
    .unwrap();
    let gx = GxConfig::load(&config).unwrap();

    let (builder, report) =
        EngineBuilder::from_gx_config(&gx, DottedVersion::from(vec![3, 70])).unwrap();
    assert_eq!(report.allowlist_error, None);
    let loaded: Vec<String> = report
        .loaded
        .iter()
        .map(|l| l.plugin.info().vendor_id.to_string())
        .collect();
    assert_eq!(loaded, [ALPHA.vendor_id]);
    assert_eq!(report.refused.len(), 1, "{:?}", report.refused);
    let engine = builder
        .bus(Arc::new(site.bus.attach("gx")))
        .vrm_access(site.vrm.clone())
        .start()
        .unwrap();
    assert_eq!(engine.vendors().len(), 1, "{:?}", engine.vendors());
}
