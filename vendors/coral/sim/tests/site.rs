//! The Coral master behind a site's `vendor = "coral"` battery, on the simulated bus.

use bmsfw_can::CanEvent;
use bmsfw_plugin_api::CanFrame;
use bmsfw_sim::registry::BmsRegistry;
use bmsfw_sim::site::SiteDescription;
use coral_sim::CoralHandle;
use coral_sim::protocol::{COMMAND_ID, REPLY_ID};
use std::sync::Arc;

const SITE: &str = r#"
[[bus]]
name = "sim0"
bitrate = 500000

[[bus.battery]]
name = "pack"
vendor = "coral"
manufacturer = "CORAL"
bms_name = "ReefStack 48"
product_code = 0xC0A1
firmware = [0x0F, 0x01]
capacity_ah = 400
modules = 4
soc = 70
"#;

#[tokio::test(start_paused = true)]
async fn a_site_battery_of_vendor_coral_runs_the_coral_master() {
    let site = SiteDescription::parse(SITE, "<test>").unwrap();
    let mut registry = BmsRegistry::new();
    coral_sim::register(&mut registry);
    assert_eq!(registry.vendors().collect::<Vec<_>>(), vec!["coral"]);
    let running = site.start_with(&registry).unwrap();
    let pack = running.battery("pack").unwrap();
    let handle: Arc<CoralHandle> = pack.vendor_controls().expect("coral controls");
    // 0x35F `0F 01` is v1.0F; the site's module count is the pack's.
    let status = handle.status();
    assert_eq!(status.running_version, [1, 0x0F, 0]);
    assert_eq!(status.modules.len(), 4);

    // The master answers HELLO on its 29-bit identifiers.
    let gx = running.bus("sim0").unwrap().attach("gx");
    gx.send(CanFrame::new(COMMAND_ID, &[0x01, 0, 0, 0, 0, 0, 0, 0]).unwrap())
        .await
        .unwrap();
    let answer = loop {
        if let CanEvent::Frame(rx) = gx.recv().await.unwrap() {
            if rx.frame.id() == REPLY_ID {
                break rx.frame;
            }
        }
    };
    assert_eq!(answer.data(), &[0x81, 1, 0xA1, 0xC0, 1, 0x0F, 0, 4]);
}
