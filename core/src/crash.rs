//! Crash points: the places where a kill cuts a durable write short, named for what they
//! guard. In builds with the `failpoints` feature (test builds only) a point can end the
//! process there with SIGKILL, as a power cut of the daemon would; the `FAILPOINTS`
//! environment variable says where, in the `fail` crate's syntax:
//!
//! - `FAILPOINTS=journal.commit=return`: killed at the first job record write;
//! - `FAILPOINTS=outbox.appended=2*off->return`: killed after the third outbox append.
//!
//! Other builds compile every point to nothing.
//!
//! | point | where |
//! |---|---|
//! | `journal.commit` / `journal.committed` | a job record (a new job, or a change of one), before and after its write |
//! | `jobs.request` | a job's request record, before its write |
//! | `events.append` / `events.appended` | an event log line, before and after its write |
//! | `outbox.append` / `outbox.appended` | a message for the portal, before and after its write (it is published after) |
//! | `staging.chunk` / `staging.chunk_recorded` | an uploaded chunk, before its write and after the upload state records it |
//! | `staging.stage` | a complete upload, before it moves into the staged packages |

/// A crash point: with the `failpoints` feature and `FAILPOINTS` naming it, the process
/// is killed here.
#[inline]
pub fn point(name: &str) {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |_| kill_now());
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Reads `FAILPOINTS` once at start-up; without the `failpoints` feature, does nothing.
pub fn configure_from_env() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}

#[cfg(feature = "failpoints")]
fn kill_now() {
    use std::io::Write;
    // Whatever the log buffered is the trace of where the kill came.
    let _ = std::io::stderr().flush();
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // SIGKILL cannot be caught; the process is gone before this line.
    std::process::abort();
}
