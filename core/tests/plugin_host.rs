//! Misbehaving plugins in their hosts, with the real engine, real host processes and two
//! simulated buses in real time: a crash, a hang, a memory hog, an exit or a forbidden
//! system call costs the plugin's own job (code 747, naming the plugin, the call and the
//! cause); the update on the other bus completes, both batteries stay monitored, and the
//! next update with the same plugin starts a fresh host and succeeds.

mod engine_common;

use bmsfw_core::engine::Engine;
use bmsfw_core::job::{JobRecord, JobState};
use bmsfw_core::plugin::HostSettings;
use bmsfw_core::vrm::{GxEngine, Presence};
use bmsfw_sim::bus::SimBus;
use bmsfw_test_fixtures::{misbehave_package, misbehave_package_with};
use engine_common::*;
use std::time::{Duration, Instant};

const BAD_SERIAL: &str = "MISB0001";

/// A misbehave battery on can0 and an alpha battery on can1, one engine for both.
struct TwoBuses {
    bad: Site,
    good: Site,
    engine: Engine,
}

async fn two_buses() -> TwoBuses {
    two_buses_with(HostSettings::default()).await
}

/// As [`two_buses`], the misbehaving plugin's hosts run with `settings`.
async fn two_buses_with(settings: HostSettings) -> TwoBuses {
    let bad = Site::build_as(MISBEHAVE, SimBus::new("can0", 500_000), [1, 0], BAD_SERIAL);
    bad.bms.lock().unwrap().installs = [1, 1];
    let good = Site::build(ALPHA, SimBus::new("can1", 500_000), [1, 2]);
    good.bms.lock().unwrap().installs = [1, 5];
    let engine = Engine::builder(bad.config())
        .plugin(bad.load_hosted("misbehave", settings))
        .plugin(good.load("alpha"))
        .bus(std::sync::Arc::new(bad.bus.attach("gx")))
        .bus(std::sync::Arc::new(good.bus.attach("gx")))
        .vrm_access(bad.vrm.clone())
        .start()
        .unwrap();
    wait_for_serial(&engine, BAD_SERIAL).await;
    wait_for_serial(&engine, SERIAL).await;
    TwoBuses { bad, good, engine }
}

async fn both_communicating(engine: &Engine) {
    let batteries = engine.batteries().await;
    for serial in [BAD_SERIAL, SERIAL] {
        let b = batteries
            .iter()
            .find(|b| b.identity.serial == serial)
            .unwrap_or_else(|| panic!("{serial} is not monitored: {batteries:#?}"));
        assert_eq!(b.presence, Presence::Communicating, "{b:#?}");
    }
}

fn failure_of(record: &JobRecord) -> (u32, String) {
    assert_eq!(record.state(), JobState::Failed, "{record:#?}");
    let f = record.failure().expect("a failed job has its failure");
    (f.code, f.message.clone())
}

/// The job's failure: the refusal of its upload (a failure before the transfer started),
/// or the failure it ended with.
async fn outcome(
    engine: &Engine,
    uploaded: Result<bmsfw_core::job::JobId, bmsfw_core::vrm::EngineRefusal>,
) -> (u32, String) {
    match uploaded {
        Err(refusal) => (refusal.code, refusal.message),
        Ok(job) => failure_of(&wait_end(engine, job, Duration::from_secs(60)).await),
    }
}

/// Runs `act` at `place` on can0 while an alpha update runs on can1, and checks that only
/// the misbehaving job fails, with 747 and `cause` in its message.
async fn costs_one_job(act: &str, place: &str, cause: &str) {
    costs_one_job_with(act, place, cause, false, HostSettings::default()).await
}

/// As [`costs_one_job`]; `bms_hangs`: the misbehave BMS stops answering after three
/// frames, so the plugin's own timeout fires; the misbehaving hosts run with `settings`.
async fn costs_one_job_with(
    act: &str,
    place: &str,
    cause: &str,
    bms_hangs: bool,
    settings: HostSettings,
) {
    let site = two_buses_with(settings).await;
    let engine = &site.engine;
    if bms_hangs {
        site.bad.bms.lock().unwrap().hang_after = Some(3);
    }
    let good_pkg = spkg(1, 5, 12_000, 7);
    let good_job = upload(engine, request(&good_pkg, 1024), &good_pkg)
        .await
        .unwrap();
    let bad_pkg = misbehave_package(act, place, 1, 1, 2000);
    let started = Instant::now();
    let uploaded = upload(engine, request_for(BAD_SERIAL, &bad_pkg, 1024), &bad_pkg).await;
    let (code, message) = outcome(engine, uploaded).await;
    let took = started.elapsed();
    assert_eq!(code, 747, "{message}");
    assert!(message.contains("com.example.misbehave"), "{message}");
    assert!(message.contains(cause), "expected {cause:?} in {message}");
    // Bounded: the deadline (250 ms) or the crash, plus the upload and the start; far
    // from "forever".
    assert!(took < Duration::from_secs(20), "the failure took {took:?}");

    let good = wait_end(engine, good_job, Duration::from_secs(60)).await;
    assert_eq!(good.state(), JobState::Completed, "{good:#?}");
    assert_eq!(
        site.good.bms.lock().unwrap().received,
        good_pkg[8..].to_vec()
    );
    both_communicating(engine).await;

    // The plugin's next job starts a fresh host (after the restart pause) and completes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    {
        let mut bms = site.bad.bms.lock().unwrap();
        bms.received.clear();
        bms.hang_after = None;
    }
    let clean = misbehave_package_with(b"", 1, 1, 2000);
    let next = upload(engine, request_for(BAD_SERIAL, &clean, 1024), &clean)
        .await
        .unwrap();
    let next = wait_end(engine, next, Duration::from_secs(60)).await;
    assert_eq!(next.state(), JobState::Completed, "{next:#?}");
    assert_eq!(site.bad.bms.lock().unwrap().received, clean[8..].to_vec());
    both_communicating(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segfault_in_poll_transmit_costs_one_job() {
    costs_one_job("segfault", "poll_transmit", "SIGSEGV").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segfault_in_handle_frame_costs_one_job() {
    costs_one_job("segfault", "handle_frame", "SIGSEGV").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_in_status_costs_one_job() {
    costs_one_job("abort", "status", "SIGABRT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_in_handle_timeout_costs_one_job() {
    costs_one_job_with(
        "exit",
        "handle_timeout",
        "exited with status 3",
        true,
        HostSettings::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_in_start_session_costs_one_job() {
    costs_one_job("exit", "start", "exited with status 3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_in_poll_transmit_misses_its_deadline() {
    costs_one_job("hang", "poll_transmit", "250 ms deadline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_in_poll_timeout_misses_its_deadline() {
    costs_one_job("hang", "poll_timeout", "250 ms deadline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_in_checkpoint_misses_its_deadline() {
    costs_one_job("hang", "checkpoint", "250 ms deadline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_in_start_session_misses_its_deadline() {
    costs_one_job("hang", "start", "5000 ms deadline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_hits_the_memory_limit() {
    // A smaller limit and a longer deadline, so that the limit, not the deadline, is
    // what a loaded test machine meets first.
    let mut settings = HostSettings::default();
    settings.limits.memory_bytes = 128 << 20;
    settings.deadlines.session = Duration::from_secs(5);
    costs_one_job_with("alloc", "poll_transmit", "memory limit", false, settings).await;
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_socket_is_forbidden() {
    costs_one_job("socket", "poll_transmit", "forbids").await;
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_etc_passwd_is_forbidden() {
    costs_one_job("passwd", "handle_frame", "forbids").await;
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_and_exec_are_forbidden() {
    costs_one_job("fork", "status", "forbids").await;
}

/// Threads left running and megabytes written to stdout and stderr are the plugin's own
/// business: the update completes, and the host (with its threads) is gone afterwards.
async fn completes_despite(act: &str, place: &str) {
    let site = two_buses().await;
    let engine = &site.engine;
    let pkg = misbehave_package(act, place, 1, 1, 2000);
    let job = upload(engine, request_for(BAD_SERIAL, &pkg, 1024), &pkg)
        .await
        .unwrap();
    let record = wait_end(engine, job, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    assert_eq!(site.bad.bms.lock().unwrap().received, pkg[8..].to_vec());
    both_communicating(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_left_running_end_with_their_host() {
    completes_despite("threads", "start").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_on_stdout_and_stderr_go_nowhere() {
    completes_despite("stdout", "poll_transmit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_inspection_that_crashes_fails_the_upload_only() {
    let site = two_buses().await;
    let engine = &site.engine;
    for (act, cause) in [("segfault", "SIGSEGV"), ("hang", "deadline")] {
        let pkg = misbehave_package(act, "inspect", 1, 1, 2000);
        let uploaded = upload(engine, request_for(BAD_SERIAL, &pkg, 1024), &pkg).await;
        let (code, message) = outcome(engine, uploaded).await;
        let text = format!("{code} {message}");
        assert!(text.contains("747"), "{text}");
        assert!(text.contains(cause), "{text}");
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    both_communicating(engine).await;
    let good_pkg = spkg(1, 5, 3000, 7);
    let good = upload(engine, request(&good_pkg, 1024), &good_pkg)
        .await
        .unwrap();
    let good = wait_end(engine, good, Duration::from_secs(60)).await;
    assert_eq!(good.state(), JobState::Completed, "{good:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_fails_three_times_in_a_row_is_suspended() {
    let site = two_buses().await;
    let engine = &site.engine;
    for _ in 0..3 {
        let pkg = misbehave_package("segfault", "poll_transmit", 1, 1, 2000);
        let uploaded = upload(engine, request_for(BAD_SERIAL, &pkg, 1024), &pkg).await;
        let (code, message) = outcome(engine, uploaded).await;
        assert_eq!(code, 747, "{message}");
        // Past the restart pause (200 ms, 400 ms, ...).
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let clean = misbehave_package_with(b"", 1, 1, 2000);
    let uploaded = upload(engine, request_for(BAD_SERIAL, &clean, 1024), &clean).await;
    let (code, message) = outcome(engine, uploaded).await;
    let text = format!("{code} {message}");
    assert!(text.contains("749"), "{text}");
    assert!(text.contains("suspended"), "{text}");
    assert!(
        text.contains("SIGSEGV"),
        "the reason names the last failure: {text}"
    );
    // Nothing was sent for the refused job: the BMS saw no frame of the clean package.
    // The other bus is untouched.
    both_communicating(engine).await;
    let good_pkg = spkg(1, 5, 3000, 7);
    let good = upload(engine, request(&good_pkg, 1024), &good_pkg)
        .await
        .unwrap();
    let good = wait_end(engine, good, Duration::from_secs(60)).await;
    assert_eq!(good.state(), JobState::Completed, "{good:#?}");
}

const HANG_MATCH: Vendor = Vendor {
    fixture: "hang-match",
    vendor_id: "com.example.hang-match",
    manufacturer: "HANGMTCH",
    product: 0x0E0C,
    tx: 0x7B0,
    rx: 0x7B8,
};

/// A plugin whose `match_battery` and `decode_version` never return, while the engine
/// monitors its battery: each call costs its deadline (100 ms) and a host, never the
/// engine; after three failures in a row the plugin is suspended, and the battery on
/// the other bus is monitored and updated all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_hanging_in_match_battery_stalls_nothing_else() {
    let hanging = Site::build_as(HANG_MATCH, SimBus::new("can0", 500_000), [1, 0], "HANG0001");
    let good = Site::build(ALPHA, SimBus::new("can1", 500_000), [1, 2]);
    good.bms.lock().unwrap().installs = [1, 5];
    let engine = Engine::builder(good.config())
        .plugin(hanging.load("hang-match"))
        .plugin(good.load("alpha"))
        .bus(std::sync::Arc::new(hanging.bus.attach("gx")))
        .bus(std::sync::Arc::new(good.bus.attach("gx")))
        .vrm_access(good.vrm.clone())
        .start()
        .unwrap();
    wait_for_serial(&engine, "HANG0001").await;
    wait_for_serial(&engine, SERIAL).await;
    let good_pkg = spkg(1, 5, 6000, 7);
    let job = upload(&engine, request(&good_pkg, 1024), &good_pkg)
        .await
        .unwrap();
    let record = wait_end(&engine, job, Duration::from_secs(60)).await;
    assert_eq!(record.state(), JobState::Completed, "{record:#?}");
    // The hanging plugin's battery is still monitored, and an update to it is refused
    // with the plugin's failure: a missed deadline, or the suspension that follows.
    let refusal = engine
        .request_update(request_for("HANG0001", &spkg(1, 1, 100, 1), 1024))
        .await
        .unwrap_err();
    assert!(
        refusal.message.contains("com.example.hang-match"),
        "{refusal:?}"
    );
    assert!(
        refusal.message.contains("deadline") || refusal.message.contains("suspended"),
        "{refusal:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refusal = engine
        .request_update(request_for("HANG0001", &spkg(1, 1, 100, 1), 1024))
        .await
        .unwrap_err();
    assert!(refusal.message.contains("suspended"), "{refusal:?}");
    let batteries = engine.batteries().await;
    assert!(
        batteries
            .iter()
            .any(|b| b.identity.serial == "HANG0001" && b.presence == Presence::Communicating),
        "{batteries:#?}"
    );
}
