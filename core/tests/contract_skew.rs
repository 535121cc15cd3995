//! Contract skew: a plugin built against plugin contract 1.0 exactly as released (the
//! pinned copy in tests/fixtures/contract-1.0) loads in this engine, in its plugin host,
//! and completes an update. Contract 1.1 added `running_version` after the session's
//! last prefix field; the 1.0 session answers it with the default.

mod engine_common;

use bmsfw_core::job::JobState;
use bmsfw_plugin_api::ContractVersion;
use bmsfw_sim::bus::SimBus;
use engine_common::*;
use std::time::Duration;

const OLD: Vendor = Vendor {
    fixture: "contract-1-0",
    vendor_id: "com.example.contract-1-0",
    manufacturer: "OLDCONTR",
    product: 0x0F10,
    tx: 0x7C0,
    rx: 0x7C8,
};

#[tokio::test(start_paused = true)]
async fn a_contract_1_0_plugin_loads_and_completes_an_update() {
    let site = Site::build(OLD, SimBus::new("can0", 500_000), [1, 2]);
    site.bms.lock().unwrap().installs = [1, 5];
    let loaded = site.load("contract-1-0");
    assert_eq!(
        loaded.plugin.info().contract,
        ContractVersion { major: 1, minor: 0 },
        "the fixture must be a real 1.0 build"
    );
    let engine = site.engine();
    wait_for_battery(&engine).await;
    let package = spkg_for(OLD.product, 1, 5, 3000, 9);
    let job = upload(&engine, request(&package, 1024), &package)
        .await
        .unwrap();
    let record = wait_end(&engine, job, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(record.version_after().unwrap().raw, vec![1, 5]);
    assert_eq!(site.bms.lock().unwrap().received, package[8..].to_vec());
}
