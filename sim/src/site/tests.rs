//! Site files: the demo parses, and every kind of mistake is reported at its line and
//! column.

use super::*;
use crate::battery::CurrentProfile;

const DEMO: &str = include_str!("../../../config/demo.toml");

const MINIMAL: &str = r#"[[bus]]
name = "sim0"
bitrate = 500000

[[bus.battery]]
name = "b1"
vendor = "acme"
manufacturer = "ACME"
bms_name = "A1"
product_code = 1
firmware = [1, 0]
capacity_ah = 100
soc = 60
"#;

fn invalid(text: &str) -> (usize, usize, String) {
    match SiteDescription::parse(text, "site.toml") {
        Err(SiteError::Invalid {
            origin,
            line,
            column,
            message,
        }) => {
            assert_eq!(origin, "site.toml");
            (line, column, message)
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn the_demo_site_parses() {
    let site = SiteDescription::parse(DEMO, "demo.toml").unwrap();
    assert_eq!(site.buses.len(), 5);
    let batteries = site.batteries();
    assert_eq!(batteries.len(), 5);
    let vendors: Vec<&str> = batteries.iter().map(|b| b.vendor.as_str()).collect();
    assert_eq!(
        vendors,
        ["voltara", "nordcell", "aurora", "boreal", "coral"]
    );
    // Two Boreal nodes share a bus; the Coral pack has several modules.
    assert_eq!(batteries[3].config.modules, 2);
    assert_eq!(batteries[4].config.modules, 4);
    let shed = &batteries[2];
    assert_eq!(
        (shed.bus.as_str(), shed.vendor.as_str()),
        ("sim2", "aurora")
    );
    assert_eq!(shed.config.identity.product_code, 0xA520);
    let house = &batteries[0];
    assert_eq!((house.bus.as_str(), house.name.as_str()), ("sim0", "house"));
    assert_eq!(house.vendor, "voltara");
    assert_eq!(house.config.identity.firmware, [0x04, 0x0F]);
    assert_eq!(house.config.identity.product_code, 0x0B17);
    assert_eq!(house.config.modules, 3);
    assert_eq!(house.config.initial_soc, 72.5);
    assert_eq!(house.config.ambient_c, 22.0);
    assert!(
        matches!(house.config.profile, CurrentProfile::Cycle { high_soc, .. } if high_soc == 90.0)
    );
    let garage = &batteries[1];
    assert_eq!(garage.bus, "sim1");
    assert_eq!(garage.config.identity.product_info_tail, Some([2, 0]));
    assert_eq!(
        garage.config.ambient_c, 17.5,
        "ambient defaults to the start temperature"
    );
    assert_eq!(garage.config.max_charge_amps, 50.0);
    for b in &batteries {
        b.config.validate().unwrap();
    }
}

#[test]
fn defaults_apply_and_batteries_on_one_bus_get_distinct_phases() {
    let two = format!(
        "{MINIMAL}\n[[bus.battery]]\nname = \"b2\"\nvendor = \"acme\"\nmanufacturer = \"ACME\"\nbms_name = \"A2\"\nproduct_code = 1\nfirmware = [1, 0]\ncapacity_ah = 50\nsoc = 60\n"
    );
    let site = SiteDescription::parse(&two, "site.toml").unwrap();
    let b = site.batteries();
    assert_eq!(b[0].config.modules, 1);
    assert_eq!(b[0].config.cells_in_series, 16);
    assert_eq!(b[0].config.soh, 100);
    assert_eq!(b[0].config.profile, CurrentProfile::Idle);
    assert_ne!(b[0].config.phase, b[1].config.phase);
}

#[test]
fn unknown_keys_are_refused_where_they_are() {
    let text = MINIMAL.replace("soc = 60", "soc = 60\nsoc_percent = 60");
    let (line, column, message) = invalid(&text);
    assert_eq!((line, column), (14, 1), "{message}");
    assert!(message.contains("soc_percent"), "{message}");
    let text = MINIMAL.replace("bitrate = 500000", "bitrate = 500000\nspeed = 1");
    let (line, _, message) = invalid(&text);
    assert_eq!(line, 4, "{message}");
    assert!(message.contains("speed"), "{message}");
}

#[test]
fn wrong_types_and_syntax_are_located() {
    let (line, column, message) =
        invalid(&MINIMAL.replace("capacity_ah = 100", "capacity_ah = \"big\""));
    assert_eq!((line, column), (12, 15), "{message}");
    let (line, _, message) = invalid(&MINIMAL.replace("firmware = [1, 0]", "firmware = [1, 0, 3]"));
    assert_eq!(line, 11, "{message}");
    let (line, _, message) =
        invalid(&MINIMAL.replace("soc = 60", "soc = 60\nproduct_info_tail = [0]"));
    assert_eq!(line, 14, "{message}");
    let (line, _, message) = invalid(&MINIMAL.replace("product_code = 1", "product_code = 70000"));
    assert_eq!(line, 10, "{message}");
    let (line, _, message) = invalid(&MINIMAL.replace("name = \"b1\"", "name = \"b1"));
    assert_eq!(line, 6, "{message}");
}

#[test]
fn values_out_of_range_point_at_the_value() {
    let (line, column, message) = invalid(&MINIMAL.replace("soc = 60", "soc = 101"));
    assert_eq!((line, column), (13, 7));
    assert_eq!(message, "battery \"b1\": soc: 101 is outside 0 to 100 %");
    let (line, column, message) = invalid(&MINIMAL.replace("\"ACME\"", "\"ACME CORPORATION\""));
    assert_eq!((line, column), (8, 16), "{message}");
    assert!(
        message.contains("manufacturer: 16 characters, 1 to 8 allowed"),
        "{message}"
    );
    let (line, _, message) = invalid(&MINIMAL.replace("bms_name = \"A1\"", "bms_name = \"Ä1\""));
    assert_eq!(line, 9, "{message}");
    assert!(message.contains("not printable ASCII"), "{message}");
    let text = MINIMAL.replace(
        "soc = 60",
        "soc = 60\nprofile = { kind = \"cycle\", charge_amps = 10, discharge_amps = 10, low_soc = 80, high_soc = 50 }",
    );
    let (line, column, message) = invalid(&text);
    assert_eq!((line, column), (14, 11), "{message}");
    assert!(message.contains("profile.high_soc"), "{message}");
    let (line, _, message) =
        invalid(&MINIMAL.replace("soc = 60", "soc = 60\nprofile = { kind = \"sine\" }"));
    assert_eq!(line, 14, "{message}");
    let (line, _, message) = invalid(&MINIMAL.replace("soc = 60", "soc = 60\ntemperature_c = 90"));
    assert_eq!(
        line, 14,
        "the defaulted ambient points at temperature_c: {message}"
    );
}

#[test]
fn site_level_mistakes() {
    let (line, column, message) = invalid(&MINIMAL.replace("500000", "400000"));
    assert_eq!((line, column), (3, 11));
    assert!(message.contains("not a standard CAN rate"), "{message}");
    let twice = format!("{MINIMAL}\n[[bus]]\nname = \"sim0\"\nbitrate = 250000\n");
    let (line, _, message) = invalid(&twice);
    assert_eq!(line, 16, "{message}");
    assert!(message.contains("described twice"), "{message}");
    let dup_battery = format!(
        "{MINIMAL}\n[[bus]]\nname = \"sim1\"\nbitrate = 250000\n{}",
        &MINIMAL[MINIMAL.find("[[bus.battery]]").unwrap()..]
    );
    let (line, _, message) = invalid(&dup_battery);
    assert_eq!(line, 19, "{message}");
    assert!(
        message.contains("battery \"b1\" is described twice"),
        "{message}"
    );
    let (line, column, message) = invalid("# nothing\n");
    assert_eq!((line, column), (1, 1));
    assert!(message.contains("no [[bus]]"), "{message}");
    let (_, _, message) = invalid(&MINIMAL.replace("soc = 60\n", ""));
    assert!(message.contains("soc"), "{message}");
    let (line, _, _) = invalid(&MINIMAL.replace("\"sim0\"", "\"sim 0\""));
    assert_eq!(line, 2);
}

#[test]
fn a_missing_file_names_its_path() {
    let err = SiteDescription::load(std::path::Path::new("/nonexistent/site.toml")).unwrap_err();
    assert!(matches!(err, SiteError::Read { .. }));
    assert!(
        err.to_string().starts_with("/nonexistent/site.toml: "),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_started_site_runs_its_batteries_on_their_buses() {
    use crate::battery::{DriverExit, PowerState};
    use bmsfw_can::{CanEvent, CanInterface};
    use std::time::Duration;

    let site = SiteDescription::parse(DEMO, "demo.toml")
        .unwrap()
        .start()
        .unwrap();
    assert_eq!(site.buses().len(), 5);
    assert_eq!(site.bus("sim1").unwrap().bitrate(), 500_000);
    let listener = site.bus("sim1").unwrap().attach("gx");
    let mut manufacturers = std::collections::BTreeSet::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(CanEvent::Frame(rx))) = tokio::time::timeout_at(until, listener.recv()).await {
        if rx.frame.id().raw() == 0x35E {
            manufacturers.insert(rx.frame.data().to_vec());
        }
    }
    // Only the battery of sim1 is heard on sim1.
    assert_eq!(
        manufacturers.into_iter().collect::<Vec<_>>(),
        vec![b"NORDCELL".to_vec()]
    );
    assert_eq!(listener.name(), "sim1");
    let garage = site.battery("garage").unwrap().control();
    assert!((garage.snapshot().current - -8.5).abs() < 1e-9);
    garage.power_cut();
    assert_eq!(garage.snapshot().power, PowerState::Off);
    assert!(site.battery("nobody").is_none());
    let exits = site.shutdown().await;
    assert_eq!(
        exits,
        vec![
            ("house".to_owned(), Ok(DriverExit::Stopped)),
            ("garage".to_owned(), Ok(DriverExit::Stopped)),
            ("shed".to_owned(), Ok(DriverExit::Stopped)),
            ("taiga".to_owned(), Ok(DriverExit::Stopped)),
            ("reefstack".to_owned(), Ok(DriverExit::Stopped))
        ]
    );
}

#[test]
fn an_oversized_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.toml");
    let mut text = DEMO.to_owned();
    while (text.len() as u64) <= MAX_SITE_FILE {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, &text).unwrap();
    let err = SiteDescription::load(&path).unwrap_err();
    assert!(
        err.to_string().contains("larger than 1048576 bytes"),
        "{err}"
    );
    std::fs::write(&path, DEMO).unwrap();
    assert_eq!(SiteDescription::load(&path).unwrap().buses.len(), 5);
}

#[test]
fn invalid_utf8_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.toml");
    // A Latin-1 "é" in the third line's value, after `name = "sh`.
    let mut bytes = b"[[bus]]\nbitrate = 500000\nname = \"sh".to_vec();
    bytes.push(0xE9);
    bytes.extend_from_slice(b"d\"\n");
    std::fs::write(&path, &bytes).unwrap();
    let err = SiteDescription::load(&path).unwrap_err();
    match &err {
        SiteError::Invalid {
            line,
            column,
            message,
            ..
        } => {
            assert_eq!((*line, *column), (3, 11), "{err}");
            assert!(
                message.contains("not UTF-8") && message.contains("0xE9"),
                "{err}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("demo.toml:3:11:"), "{err}");
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn check(text: &str) {
        match SiteDescription::parse(text, "p.toml") {
            Ok(site) => {
                for b in site.batteries() {
                    b.config.validate().unwrap();
                }
            }
            Err(SiteError::Invalid {
                line,
                column,
                message,
                ..
            }) => {
                let lines = text.split('\n').count();
                assert!(
                    line >= 1 && line <= lines,
                    "line {line} of {lines}: {message}"
                );
                assert!(column >= 1, "{message}");
                assert!(!message.is_empty());
            }
            Err(other) => panic!("{other}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn any_text_is_parsed_or_located(text in "\\PC{0,300}") {
            check(&text);
        }

        #[test]
        fn a_damaged_demo_is_parsed_or_located(
            at in 0usize..4000,
            cut in 0usize..40,
            insert in "[ -~\\n]{0,12}",
        ) {
            let mut text = DEMO.to_owned();
            let at = at.min(text.len());
            let end = (at + cut).min(text.len());
            if text.is_char_boundary(at) && text.is_char_boundary(end) {
                text.replace_range(at..end, &insert);
                check(&text);
            }
        }
    }
}
