use super::*;
use crate::frame::CanId;
use crate::package::{PackageSource, PackageSource_TO, SourceError};
use crate::session::{Phase, SessionStatus};
use crate::{ContractVersion, ErrorCode, PackageError, PackageInfo};
use abi_stable::std_types::{RResult, RSliceMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn the_exported_symbol_is_the_one_abi_stable_looks_up() {
    assert_eq!(
        crate::__root_module_symbol!(),
        abi_stable::library::ROOT_MODULE_LOADER_NAME
    );
}

/// What a test session does when called.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Never,
    OnFrame,
    OnStatus,
    OnDrop,
}

struct TestSession {
    trigger: Trigger,
    done: u64,
    drops: Arc<AtomicUsize>,
}

impl Session for TestSession {
    fn handle_frame(&mut self, _now: Timestamp, frame: &CanFrame) {
        if self.trigger == Trigger::OnFrame {
            panic!("boom in handle_frame");
        }
        self.done += frame.len() as u64;
    }
    fn handle_timeout(&mut self, _now: Timestamp) {}
    fn poll_transmit(&mut self, _now: Timestamp) -> Option<CanFrame> {
        CanFrame::new(CanId::standard(0x7E0).unwrap(), &[1, 2])
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        Some(Timestamp::from_micros(1_000))
    }
    fn status(&self) -> SessionStatus {
        if self.trigger == Trigger::OnStatus {
            panic!("boom in status");
        }
        SessionStatus::new(Phase::TRANSFERRING, self.done, 100)
    }
    fn abort(&mut self, _now: Timestamp, _reason: &AbortReason) {}
    fn checkpoint(&self) -> Vec<u8> {
        vec![self.done as u8]
    }
}

impl Drop for TestSession {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.trigger == Trigger::OnDrop {
            panic!("boom in drop");
        }
    }
}

/// A session as the engine holds it: behind the abi_stable trait object.
fn boxed(trigger: Trigger) -> (BoxedSession, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let session = TestSession {
        trigger,
        done: 0,
        drops: drops.clone(),
    };
    (
        TransferSession_TO::from_value(SessionGuard::new(session), TD_Opaque),
        drops,
    )
}

fn frame(data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::standard(0x7E8).unwrap(), data).unwrap()
}

#[test]
fn a_healthy_session_passes_every_call_through() {
    let (mut s, _) = boxed(Trigger::Never);
    let now = Timestamp::from_micros(5);
    s.handle_frame(now, frame(&[0; 8]));
    assert_eq!(s.status().bytes_done, 8);
    assert!(s.poll_transmit(now).is_some());
    assert_eq!(
        s.poll_timeout().into_option(),
        Some(Timestamp::from_micros(1_000))
    );
    assert_eq!(s.checkpoint().as_slice(), &[8]);
}

#[test]
fn a_panic_makes_the_session_failed_with_plugin_fault_for_good() {
    let (mut s, drops) = boxed(Trigger::OnFrame);
    let now = Timestamp::from_micros(5);
    assert_eq!(s.status().phase, Phase::TRANSFERRING);
    s.handle_frame(now, frame(&[1]));
    // The broken session was dropped at once.
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    for _ in 0..3 {
        let st = s.status();
        assert_eq!(st.phase, Phase::FAILED);
        let failure = st.outcome.clone().into_option().unwrap();
        assert_eq!(failure.code, ErrorCode::PLUGIN_FAULT);
        assert!(
            failure.message.contains("handle_frame") && failure.message.contains("boom"),
            "{failure}"
        );
        assert_eq!(st.bytes_total, 100, "the last known progress is kept");
        // Nothing reaches the (dropped) session any more.
        assert!(s.poll_transmit(now).is_none());
        assert!(s.poll_timeout().is_none());
        assert!(s.checkpoint().is_empty());
        s.handle_timeout(now);
        s.handle_frame(now, frame(&[2]));
        s.abort(now, AbortReason::new(742, "watchdog"));
    }
    drop(s);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped exactly once");
}

#[test]
fn a_panic_in_status_is_reported_by_that_same_call() {
    let (mut s, _) = boxed(Trigger::OnStatus);
    let st = s.status();
    assert_eq!(st.phase, Phase::FAILED);
    assert_eq!(st.failure_code(), Some(ErrorCode::PLUGIN_FAULT));
    assert!(s.poll_transmit(Timestamp::ZERO).is_none());
}

#[test]
fn a_panicking_destructor_does_not_unwind_into_the_engine() {
    let (s, drops) = boxed(Trigger::OnDrop);
    // Dropping runs the session's destructor through the trait object's `extern "C"`
    // drop function: an unwinding panic there would abort the whole process.
    drop(s);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

/// A plugin whose behaviour each test picks through the battery's manufacturer.
struct TestPlugin;

impl Plugin for TestPlugin {
    type Session = TestSession;
    fn new() -> Self {
        TestPlugin
    }
    fn identity(&self) -> PluginIdentity {
        let mut id = PluginIdentity::new("com.example.test", "Test", "0.1.0");
        // A plugin cannot claim another contract: the glue overwrites it.
        id.contract = ContractVersion { major: 9, minor: 9 };
        id
    }
    fn match_battery(&self, battery: &BatteryIdentity) -> DeviceMatch {
        match battery.manufacturer.as_str() {
            "PANIC" => panic!("boom in match_battery"),
            "TEST" => DeviceMatch::updatable(),
            _ => DeviceMatch::not_mine(),
        }
    }
    fn decode_version(&self, raw: &[u8]) -> Result<FirmwareVersion, Failure> {
        match raw {
            [] => panic!("boom in decode_version"),
            [a] => Ok(FirmwareVersion::new(raw, format!("v{a}"), &[u32::from(*a)])),
            _ => Err(Failure::new(ErrorCode(901), "only one byte")),
        }
    }
    fn inspect_package(&self, package: &mut PackageReader) -> Result<PackageInfo, PackageError> {
        let mut first = [0u8; 1];
        package.read_exact_at(0, &mut first)?;
        if first[0] == b'!' {
            panic!("boom in inspect_package");
        }
        Err(PackageError::at_offset(
            ErrorCode::PACKAGE_INVALID,
            0,
            "not a test package",
        ))
    }
    fn start_session(&self, request: SessionRequest) -> Result<TestSession, Failure> {
        if request.options.modules.contains(&13) {
            panic!("boom in start_session");
        }
        Ok(TestSession {
            trigger: Trigger::Never,
            done: request.resume.map_or(0, |r| u64::from(r[0])),
            drops: Arc::new(AtomicUsize::new(0)),
        })
    }
}

crate::export_plugin!(TestPlugin);

struct Bytes(Vec<u8>);

impl PackageSource for Bytes {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, mut buf: RSliceMut<'_, u8>) -> RResult<usize, SourceError> {
        let start = (offset as usize).min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        RResult::ROk(n)
    }
}

fn source(bytes: &[u8]) -> BoxedPackageSource {
    PackageSource_TO::from_value(Bytes(bytes.to_vec()), TD_Opaque)
}

#[test]
fn every_entry_point_of_the_exported_module_turns_panics_into_plugin_faults() {
    let module = root_module::<TestPlugin>();

    let id = (module.identity())().unwrap();
    assert_eq!(id.vendor_id.as_str(), "com.example.test");
    assert_eq!(id.contract, CONTRACT_VERSION);

    let fault = |f: Failure, what: &str| {
        assert_eq!(f.code, ErrorCode::PLUGIN_FAULT, "{f}");
        assert!(f.message.contains(what), "{f} should name {what}");
    };

    let ok = (module.match_battery())(&BatteryIdentity::new("TEST")).unwrap();
    assert_eq!(ok.kind, crate::MatchKind::UPDATABLE);
    fault(
        (module.match_battery())(&BatteryIdentity::new("PANIC")).unwrap_err(),
        "match_battery",
    );

    let v = (module.decode_version())(RSlice::from_slice(&[4])).unwrap();
    assert_eq!(v.display.as_str(), "v4");
    let vendor = (module.decode_version())(RSlice::from_slice(&[4, 5])).unwrap_err();
    assert_eq!(
        vendor.code,
        ErrorCode(901),
        "a vendor's own error passes unchanged"
    );
    fault(
        (module.decode_version())(RSlice::from_slice(&[])).unwrap_err(),
        "decode_version",
    );

    let e = (module.inspect_package())(source(b"x")).unwrap_err();
    assert_eq!(e.code, ErrorCode::PACKAGE_INVALID);
    let e = (module.inspect_package())(source(b"!")).unwrap_err();
    assert_eq!(e.code, ErrorCode::PLUGIN_FAULT);
    assert!(e.message.contains("inspect_package"), "{e}");

    let battery = BatteryIdentity::new("TEST");
    let resume = ROption::RSome(RVec::from(vec![42]));
    let mut s =
        (module.start_session())(&battery, source(b"x"), &SessionOptions::default(), resume)
            .unwrap();
    assert_eq!(
        s.status().bytes_done,
        42,
        "the checkpoint reached the session"
    );
    let options = SessionOptions {
        modules: RVec::from(vec![13]),
        ..SessionOptions::default()
    };
    match (module.start_session())(&battery, source(b"x"), &options, ROption::RNone) {
        RResult::RErr(f) => fault(f, "start_session"),
        RResult::ROk(_) => panic!("start_session should have failed"),
    }
}
