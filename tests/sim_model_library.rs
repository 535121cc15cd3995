//! BMS models loaded from libraries (`bmsfw-sim-api`): a site file names the SPKG BMS
//! of `tests/fixtures/models/spkg` by path; the simulator runs it beside the battery's
//! BMS-Can telemetry, keeps 0x35F in step with what the model installs, and cuts its
//! power. Libraries that are not models, and options the model refuses, are errors that
//! name the battery, the file and what was wrong.

use bmsfw_can::{CanEvent, CanFrame, CanId, CanInterface};
use bmsfw_sim::model_library::{LibraryHandle, ModelLibrary};
use bmsfw_sim::site::SiteDescription;
use std::time::Duration;

fn site(model: &str, options: &str) -> String {
    format!(
        r#"
[[bus]]
name = "sim0"
bitrate = 500000

[[bus.battery]]
name = "bad"
vendor = "misbehave"
model = "{model}"
{options}
manufacturer = "MISBEHAV"
bms_name = "SPKG BMS"
product_code = 0x0E0B
firmware = [1, 0]
capacity_ah = 100
serial = "MISB0001"
soc = 80
"#
    )
}

fn spkg() -> String {
    bmsfw_test_fixtures::model_library("spkg")
        .display()
        .to_string()
}

const OPTIONS: &str =
    "model_options = { request_id = 0x7E2, response_id = 0x7EA, installs = [1, 4] }";

/// The next frame with identifier `id` on `node`, within a second.
async fn next(node: &impl CanInterface, id: u16) -> CanFrame {
    let want = CanId::standard(id).unwrap();
    tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if let CanEvent::Frame(f) = node.recv().await.unwrap()
                && f.frame.id() == want
            {
                return f.frame;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no frame {id:#X} within a second"))
}

#[tokio::test(start_paused = true)]
async fn a_model_library_runs_the_bms_and_its_install_reaches_0x35f() {
    let description = SiteDescription::parse(&site(&spkg(), OPTIONS), "<site>").unwrap();
    let running = description.start().unwrap();
    let gx = running.bus("sim0").unwrap().attach("gx");
    let request = CanId::standard(0x7E2).unwrap();
    // The pack's telemetry names the start firmware.
    assert_eq!(next(&gx, 0x35F).await.data()[2..4], [1, 0]);
    for (seq, data) in [(0u8, [1u8, 2, 3]), (1, [4, 5, 6])] {
        let mut frame = vec![seq];
        frame.extend_from_slice(&data);
        gx.send(CanFrame::new(request, &frame).unwrap())
            .await
            .unwrap();
        assert_eq!(next(&gx, 0x7EA).await.data(), [0x06, seq]);
    }
    gx.send(CanFrame::new(request, &[0xFF]).unwrap())
        .await
        .unwrap();
    assert_eq!(next(&gx, 0x7EA).await.data(), [0x06, 0xFF]);
    // The next 0x35F names what the model installed; the flash's ground truth agrees.
    let shown = loop {
        let f = next(&gx, 0x35F).await;
        if f.data()[2..4] != [1, 0] {
            break f;
        }
    };
    assert_eq!(shown.data()[2..4], [1, 4]);
    let handle = running
        .battery("bad")
        .unwrap()
        .vendor_controls::<LibraryHandle>()
        .expect("a library model's handle");
    let flash = handle.flash();
    assert_eq!(flash.running_version.as_slice(), &[1, 4]);
    assert_eq!(flash.activations, 1);
    assert!(handle.fault().is_none());

    // Without power the BMS answers nothing and its telemetry stops.
    running.battery("bad").unwrap().control().power_cut();
    tokio::time::sleep(Duration::from_millis(50)).await;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(1), gx.recv()).await {}
    gx.send(CanFrame::new(request, &[2, 7]).unwrap())
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(3), gx.recv()).await;
    assert!(
        !matches!(heard, Ok(Ok(CanEvent::Frame(_)))),
        "a BMS without power sent {heard:?}"
    );
}

/// Why the site of `text` does not start.
fn start_error(text: &str) -> String {
    match SiteDescription::parse(text, "<site>").unwrap().start() {
        Ok(_) => panic!("the site started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_library_that_is_not_a_model_is_refused_naming_the_battery_and_the_file() {
    let plugin = bmsfw_test_fixtures::library("alpha").display().to_string();
    let text = start_error(&site(&plugin, OPTIONS));
    assert!(text.contains("bad") && text.contains(&plugin), "{text}");
    assert!(text.contains("not a bmsfw model library"), "{text}");

    let e = start_error(&site("/nonexistent/model.so", OPTIONS));
    assert!(e.contains("/nonexistent/model.so"), "{e}");
    let e = ModelLibrary::open(std::path::Path::new("/dev/null")).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

#[tokio::test]
async fn options_the_model_refuses_are_errors_naming_the_key() {
    let text = start_error(&site(
        &spkg(),
        "model_options = { request_id = 0x7E2, speed = 3 }",
    ));
    assert!(
        text.contains("model spkg") && text.contains("speed"),
        "{text}"
    );
}

#[test]
fn model_options_without_a_model_and_an_empty_model_are_refused_where_they_stand() {
    let text = site("x", OPTIONS).replace("model = \"x\"\n", "");
    let e = SiteDescription::parse(&text, "site.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("model_options without a model"), "{e}");
    assert!(e.starts_with("site.toml:9:"), "{e}");
    let e = SiteDescription::parse(&site("", OPTIONS), "site.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model is empty") && e.starts_with("site.toml:9:"),
        "{e}"
    );
}

#[test]
fn a_relative_model_path_is_resolved_against_the_site_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("site.toml"), site("libmodel.so", OPTIONS)).unwrap();
    let description = SiteDescription::load(&dir.path().join("site.toml")).unwrap();
    let battery = &description.batteries()[0];
    let model = battery.model.as_ref().unwrap();
    assert_eq!(model.path, dir.path().join("libmodel.so"));
    assert!(
        model.options.contains("request_id = 2018"),
        "{}",
        model.options
    );
}
