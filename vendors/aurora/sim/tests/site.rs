//! The aurora BMS behind a site's `vendor = "aurora"` battery, on the simulated bus.

use aurora_sim::protocol::{REQUEST_CAN_ID, RESPONSE_CAN_ID};
use aurora_sim::{AuroraFactory, AuroraHandle};
use bmsfw_can::CanEvent;
use bmsfw_plugin_api::CanFrame;
use bmsfw_sim::registry::BmsRegistry;
use bmsfw_sim::site::SiteDescription;
use std::sync::Arc;

const SITE: &str = r#"
[[bus]]
name = "sim0"
bitrate = 500000

[[bus.battery]]
name = "shed"
vendor = "aurora"
manufacturer = "AURORA"
bms_name = "PowerCore 10"
product_code = 0xA520
firmware = [4, 15]
capacity_ah = 200
soc = 66

[[bus.battery]]
name = "house"
vendor = "voltara"
manufacturer = "VOLTARA"
bms_name = "VX-48"
product_code = 0x0B17
firmware = [4, 15]
capacity_ah = 300
soc = 70
"#;

#[tokio::test(start_paused = true)]
async fn a_site_battery_of_vendor_aurora_runs_the_aurora_bms() {
    let site = SiteDescription::parse(SITE, "<test>").unwrap();
    let mut registry = BmsRegistry::new();
    aurora_sim::register(&mut registry);
    assert_eq!(registry.vendors().collect::<Vec<_>>(), vec!["aurora"]);
    let running = site.start_with(&registry).unwrap();
    let shed = running.battery("shed").unwrap();
    let handle: Arc<AuroraHandle> = shed.vendor_controls().expect("aurora controls");
    assert_eq!(handle.status().running_version, [4, 15]);
    assert!(
        running
            .battery("house")
            .unwrap()
            .vendor_controls::<AuroraHandle>()
            .is_none()
    );
    shed.control().set_soc(55.0);
    assert_eq!(shed.control().snapshot().soc, 55.0);

    // The aurora BMS answers a UDS read on 0x7E2/0x7EA; the plain battery does not.
    let gx = running.bus("sim0").unwrap().attach("gx");
    let read = CanFrame::new(
        REQUEST_CAN_ID,
        &[0x03, 0x22, 0xF1, 0x95, 0xCC, 0xCC, 0xCC, 0xCC],
    )
    .unwrap();
    gx.send(read).await.unwrap();
    let answer = loop {
        if let CanEvent::Frame(rx) = gx.recv().await.unwrap() {
            if rx.frame.id() == RESPONSE_CAN_ID {
                break rx.frame;
            }
        }
    };
    assert_eq!(answer.data(), &[0x05, 0x62, 0xF1, 0x95, 4, 15, 0xCC, 0xCC]);
}

#[tokio::test(start_paused = true)]
async fn a_factory_can_adjust_each_bms() {
    let site = SiteDescription::parse(SITE, "<test>").unwrap();
    let mut registry = BmsRegistry::new();
    registry.register(
        "aurora",
        Arc::new(AuroraFactory::new(|battery, config| {
            assert_eq!(battery.name, "shed");
            config.bootloader = [1, 4];
        })),
    );
    let running = site.start_with(&registry).unwrap();
    let gx = running.bus("sim0").unwrap().attach("gx");
    let read = CanFrame::new(
        REQUEST_CAN_ID,
        &[0x03, 0x22, 0xF1, 0x80, 0xCC, 0xCC, 0xCC, 0xCC],
    )
    .unwrap();
    gx.send(read).await.unwrap();
    let answer = loop {
        if let CanEvent::Frame(rx) = gx.recv().await.unwrap() {
            if rx.frame.id() == RESPONSE_CAN_ID {
                break rx.frame;
            }
        }
    };
    assert_eq!(answer.data()[..6], [0x05, 0x62, 0xF1, 0x80, 1, 4]);
}

#[tokio::test(start_paused = true)]
async fn the_demo_site_runs_an_aurora_bms_behind_its_aurora_battery() {
    let demo = include_str!("../../../../config/demo.toml");
    let site = SiteDescription::parse(demo, "demo.toml").unwrap();
    let mut registry = BmsRegistry::new();
    aurora_sim::register(&mut registry);
    let running = site.start_with(&registry).unwrap();
    let shed = running
        .batteries()
        .iter()
        .find(|b| b.description.vendor == "aurora")
        .expect("the demo has an aurora battery");
    let handle: Arc<AuroraHandle> = shed.vendor_controls().unwrap();
    assert_eq!(handle.status().running_version, [4, 15]);
    let others = running
        .batteries()
        .iter()
        .filter(|b| b.description.vendor != "aurora");
    assert!(others.clone().count() >= 1);
    assert!(
        others
            .into_iter()
            .all(|b| b.vendor_controls::<AuroraHandle>().is_none())
    );
}
