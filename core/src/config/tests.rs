use super::*;
use crate::toml_file::line_column;
use proptest::prelude::*;
use std::time::Duration;

fn parse(text: &str) -> Result<GxConfig, TomlFileError> {
    GxConfig::parse(Path::new("gx.toml"), text)
}

fn position_of(text: &str, needle: &str) -> (usize, usize) {
    line_column(text, text.find(needle).expect("needle in text"))
}

const FULL: &str = r#"
portal_id = "c0619ab00001"
state_dir = "state"

[plugins]
dir = "plugins"
allowlist = "allowlist.toml"
load_method = "private-copy"
max_library_bytes = 1048576

[[can]]
name = "can0"
backend = "socketcan"

[[can]]
name = "vcan1"
backend = "sim"

[gates]
soc_min_percent = 60
temperature_celsius = { min = 0.0, max = 45.0 }
bitrate = 500000
bus_load_budget_percent = 70
min_gx_firmware = "v3.70"

[staging]
dir = "staging"
max_package_bytes = 8388608
min_free_bytes = 1000

[mqtt]
broker = "broker.local:8883"
vrm_portal = "full"
keepalive_seconds = 30
broker_keepalive_seconds = 5
"#;

#[test]
fn a_full_file_sets_every_field() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.portal_id.as_str(), "c0619ab00001");
    assert_eq!(c.plugins.load_method, LoadMethodSetting::PrivateCopy);
    assert_eq!(c.plugins.max_library_bytes, 1 << 20);
    assert_eq!(c.can.0.len(), 2);
    assert_eq!(c.can.0[1].backend, CanBackend::Sim);
    assert_eq!(c.gates.soc_min_percent.percent(), 60);
    assert_eq!(c.gates.temperature_celsius.max, 45.0);
    assert_eq!(c.gates.bus_load_budget_percent.get(), 70);
    assert_eq!(c.gates.min_gx_firmware.parts(), &[3, 70]);
    assert_eq!(c.staging.max_package_bytes, 8 << 20);
    assert_eq!(c.mqtt.broker.host, "broker.local");
    assert_eq!(c.mqtt.broker.port, 8883);
    assert_eq!(c.mqtt.vrm_portal, crate::vrm::VrmPortalMode::Full);
    assert_eq!(c.mqtt.keepalive_seconds.duration().as_secs(), 30);
    assert_eq!(c.mqtt.broker_keepalive_seconds.duration().as_secs(), 5);
}

#[test]
fn only_the_portal_id_is_required_and_defaults_are_safe() {
    let c = parse("portal_id = \"abc123\"\n").unwrap();
    assert_eq!(c.gates.soc_min_percent.percent(), 50);
    assert_eq!(c.gates.bitrate.bits_per_second(), 500_000);
    assert_eq!(c.gates.bus_load_budget_percent.get(), 80);
    assert_eq!(c.plugins.load_method, LoadMethodSetting::SealedMemfd);
    assert_eq!(c.can.0[0].name, "can0");
    assert_eq!(c.mqtt.vrm_portal, crate::vrm::VrmPortalMode::ReadOnly);
    assert_eq!(c.mqtt.keepalive_seconds.duration().as_secs(), 60);
    assert_eq!(c.mqtt.broker_keepalive_seconds.duration().as_secs(), 10);
    let e = parse("").unwrap_err();
    assert!(e.message.contains("portal_id"), "{e}");
}

#[test]
fn the_shipped_gx_toml_is_valid_and_states_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gx.toml");
    let c = GxConfig::load(&path).unwrap();
    let d = parse("portal_id = \"x\"\n").unwrap();
    assert_eq!(c.gates, d.gates);
    assert_eq!(c.staging.max_package_bytes, d.staging.max_package_bytes);
    assert_eq!(c.staging.min_free_bytes, d.staging.min_free_bytes);
    assert_eq!(c.plugins.load_method, d.plugins.load_method);
    assert_eq!(c.plugins.max_library_bytes, d.plugins.max_library_bytes);
    assert_eq!(c.plugins.host, d.plugins.host);
    assert_eq!(c.mqtt, d.mqtt);
    assert_eq!(c.site, d.site);
}

#[test]
fn plugin_host_settings_are_bounded_and_reach_the_hosts() {
    let c = parse(
        "portal_id = \"x\"\n[plugins.host]\nsession_deadline_ms = 400\nmemory_limit_mib = 64\n\
         quarantine_after = 5\nprogram = \"/opt/host\"\n",
    )
    .unwrap();
    let settings = c.plugins.host.settings();
    assert_eq!(settings.deadlines.session, Duration::from_millis(400));
    assert_eq!(settings.deadlines.identity, Duration::from_millis(100));
    assert_eq!(settings.limits.memory_bytes, 64 << 20);
    assert_eq!(settings.quarantine_after, 5);
    assert_eq!(
        settings.program.unwrap().program,
        std::path::PathBuf::from("/opt/host")
    );
    for (key, value) in [
        ("session_deadline_ms", "0"),
        ("session_deadline_ms", "10001"),
        ("memory_limit_mib", "-1"),
        ("quarantine_after", "0"),
        ("cpu_limit_seconds", "86401"),
    ] {
        let text = format!("portal_id = \"x\"\n[plugins.host]\n{key} = {value}\n");
        let err = parse(&text).unwrap_err().to_string();
        // Named by its place: line 3 holds the key.
        assert!(err.starts_with("gx.toml:3:"), "{key} = {value}: {err}");
        assert!(err.contains("must be between"), "{key} = {value}: {err}");
    }
    let err = parse("portal_id = \"x\"\n[plugins.host]\nsession_deadline = 5\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("session_deadline"), "{err}");
}

#[test]
fn unknown_keys_are_refused_where_they_are() {
    for (from, to) in [
        ("state_dir =", "statedir ="),
        ("load_method =", "loader ="),
        ("backend = \"sim\"", "backend = \"sim\"\nspeed = 250000"),
        ("bitrate =", "bit_rate ="),
        ("min = 0.0,", "min = 0.0, mid = 20.0,"),
        ("broker =", "host ="),
    ] {
        let text = FULL.replacen(from, to, 1);
        let key = to
            .split([' ', '\n'])
            .find(|w| !w.is_empty() && !from.contains(w))
            .unwrap();
        let key = key.trim_end_matches(',');
        let e = parse(&text).unwrap_err();
        assert_eq!(
            (e.line, e.column),
            position_of(&text, key),
            "{e} (key {key})"
        );
        assert!(e.message.contains(key), "{e}");
    }
}

#[test]
fn unsafe_thresholds_are_refused_where_they_are() {
    let cases = [
        (
            "soc_min_percent = 60",
            "soc_min_percent = 49",
            "49",
            "never",
        ),
        (
            "soc_min_percent = 60",
            "soc_min_percent = 101",
            "101",
            "between 50 and 100",
        ),
        ("bitrate = 500000", "bitrate = 250000", "250000", "500000"),
        (
            "bus_load_budget_percent = 70",
            "bus_load_budget_percent = 0",
            "0",
            "between 1 and 100",
        ),
        (
            "min = 0.0, max = 45.0",
            "min = 50.0, max = 45.0",
            "{ min = 50.0",
            "min < max",
        ),
        (
            "\"v3.70\"",
            "\"v3.seventy\"",
            "\"v3.seventy\"",
            "not a number",
        ),
        (
            "\"broker.local:8883\"",
            "\"broker.local\"",
            "\"broker.local\"",
            "host:port",
        ),
        (
            "vrm_portal = \"full\"",
            "vrm_portal = \"all\"",
            "\"all\"",
            "read-only",
        ),
        (
            "keepalive_seconds = 30",
            "keepalive_seconds = 0",
            "0",
            "between 1 and 3600",
        ),
        (
            "broker_keepalive_seconds = 5",
            "broker_keepalive_seconds = 601",
            "601",
            "between 1 and 600",
        ),
        (
            "portal_id = \"c0619ab00001\"",
            "portal_id = \"N/c0619\"",
            "\"N/c0619\"",
            "portal_id",
        ),
        (
            "name = \"vcan1\"",
            "name = \"can0\"",
            "[[can]]",
            "listed twice",
        ),
        (
            "backend = \"socketcan\"",
            "backend = \"socketcan\"\nbitrate = 499999",
            "[[can]]",
            "not a standard CAN bit rate",
        ),
        (
            "backend = \"sim\"",
            "backend = \"sim\"\nbitrate = 500000",
            "[[can]]",
            "SocketCAN interfaces",
        ),
        (
            "load_method = \"private-copy\"",
            "load_method = \"mmap\"",
            "\"mmap\"",
            "private-copy",
        ),
    ];
    for (from, to, at, words) in cases {
        let text = FULL.replacen(from, to, 1);
        let e = parse(&text).unwrap_err();
        let expected = if !to.contains(at) {
            // Refused as a whole: the list of interfaces at its first table, the
            // temperature range at its opening brace.
            position_of(&text, at)
        } else {
            let start = text.find(to).unwrap() + to.find(at).unwrap();
            line_column(&text, start)
        };
        assert_eq!((e.line, e.column), expected, "{e}");
        assert!(e.message.contains(words), "{e} should say {words:?}");
    }
}

#[test]
fn relative_paths_are_resolved_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gx.toml");
    std::fs::write(&path, FULL).unwrap();
    let c = GxConfig::load(&path).unwrap();
    assert_eq!(c.plugins.dir, dir.path().join("plugins"));
    assert_eq!(c.plugins.allowlist, dir.path().join("allowlist.toml"));
    assert_eq!(c.state_dir, dir.path().join("state"));
    assert_eq!(
        c.load_method(),
        LoadMethod::PrivateCopy {
            dir: dir.path().join("state/plugin-copies")
        }
    );
    let e = GxConfig::load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(e.to_string().contains("missing.toml"), "{e}");
}

proptest! {
    #[test]
    fn hostile_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse(&text);
    }

    #[test]
    fn mutated_files_never_panic_and_errors_are_located(cut in 0usize..700, insert in "[\\[\\]{}=\"a-z0-9._ \\n-]{0,12}") {
        let mut text = FULL.to_owned();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &insert);
        if let Err(e) = parse(&text) {
            prop_assert!(e.line >= 1 && e.line <= text.lines().count() + 1);
            prop_assert!(e.column >= 1);
        }
    }
}

#[test]
fn the_site_section_chooses_the_source_and_bounds_its_timing() {
    let c = parse(
        "portal_id = \"x\"\n[site]\nsource = \"venus\"\nbroker = \"10.0.0.2:1884\"\n\
         refresh_seconds = 5\nstale_after_seconds = 12\npublish_status = false\n",
    )
    .unwrap();
    assert_eq!(c.site.source(), SiteSource::Venus);
    assert_eq!(c.site.broker.host, "10.0.0.2");
    assert_eq!(c.site.broker.port, 1884);
    assert_eq!(c.site.refresh_seconds.duration(), Duration::from_secs(5));
    assert_eq!(
        c.site.stale_after_seconds.duration(),
        Duration::from_secs(12)
    );
    assert!(!c.site.publish_status);
    let d = parse("portal_id = \"x\"\n").unwrap();
    assert_eq!(d.site.source, None);
    assert_eq!(d.site.source(), SiteSource::detect());
    assert_eq!(d.site.broker.port, 1883);
    assert_eq!(d.site.refresh_seconds.duration(), Duration::from_secs(10));
    assert_eq!(
        d.site.stale_after_seconds.duration(),
        Duration::from_secs(30)
    );
    assert!(d.site.publish_status);
    for (text, words) in [
        ("source = \"dbus\"", "unknown variant"),
        ("refresh_seconds = 0", "between 1 and 50"),
        ("refresh_seconds = 60", "between 1 and 50"),
        ("stale_after_seconds = 1", "between 2 and 600"),
        (
            "refresh_seconds = 10\nstale_after_seconds = 15",
            "at least twice",
        ),
        ("sauce = \"venus\"", "sauce"),
    ] {
        let err = parse(&format!("portal_id = \"x\"\n[site]\n{text}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(words), "{text}: {err}");
    }
}

#[test]
fn the_upload_bound_is_read_checked_and_defaults_to_an_hour() {
    let d = parse("portal_id = \"x\"\n").unwrap();
    assert_eq!(
        d.mqtt.upload_timeout_seconds.duration(),
        Duration::from_secs(3600)
    );
    let c = parse("portal_id = \"x\"\n[mqtt]\nupload_timeout_seconds = 90\n").unwrap();
    assert_eq!(
        c.mqtt.upload_timeout_seconds.duration(),
        Duration::from_secs(90)
    );
    for bad in ["0", "86401", "-5", "\"1h\""] {
        let err = parse(&format!(
            "portal_id = \"x\"\n[mqtt]\nupload_timeout_seconds = {bad}\n"
        ))
        .unwrap_err()
        .to_string();
        // Named, or placed on its line.
        assert!(
            err.contains("upload_timeout_seconds") || err.contains("gx.toml:3:"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_socketcan_interface_may_name_the_bit_rate_the_daemon_sets() {
    let c = parse(&FULL.replacen(
        "backend = \"socketcan\"",
        "backend = \"socketcan\"\nbitrate = 250000",
        1,
    ))
    .unwrap();
    assert_eq!(c.can.0[0].bitrate, Some(250_000));
    assert_eq!(parse(FULL).unwrap().can.0[0].bitrate, None);
}
