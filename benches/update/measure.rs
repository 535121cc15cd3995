//! What the bench reads about its own process and its plugin hosts: CPU time and peak
//! resident memory.
//!
//! Plugin hosts are child processes. A host that ended (a session's or a package
//! inspection's, killed and reaped when its work is done) counts in this process's
//! `RUSAGE_CHILDREN`; a host still running (a plugin's long-lived identity host) is read
//! from `/proc/<pid>/stat`.

use std::collections::BTreeMap;
use std::time::Duration;

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes one `rusage` into the zeroed value it is handed.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// User plus system CPU time of this process so far.
pub fn cpu_time() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// User plus system CPU time of this process's children that ended and were reaped.
pub fn reaped_children_cpu_time() -> Duration {
    rusage(libc::RUSAGE_CHILDREN)
}

/// User plus system CPU time of the running process `pid` so far (`/proc/<pid>/stat`).
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields follow its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line (1-based), 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)?;
    let total = utime + stime;
    Some(
        Duration::from_secs(total / ticks)
            + Duration::from_nanos(total % ticks * 1_000_000_000 / ticks),
    )
}

/// A `kB` field of `/proc/<pid>/status` (`self` for this process), in bytes.
pub fn process_status_bytes(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A `kB` field of `/proc/self/status`, in bytes.
pub fn status_bytes(field: &str) -> Option<u64> {
    process_status_bytes("self", field)
}

/// Resets the peak resident set size (`VmHWM`) to the current one (Linux, `clear_refs` 5).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The running children of this process (`/proc/self/task/*/children`).
pub fn children() -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `bytes` in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// CPU time from a mark on: this process's, and its plugin hosts' (the ones that ended
/// since, and the ones still running).
pub struct CpuMark {
    own: Duration,
    reaped: Duration,
    running: Vec<(u32, Duration)>,
}

impl CpuMark {
    /// A mark now; `hosts` are the hosts running now.
    pub fn now(hosts: &[u32]) -> CpuMark {
        CpuMark {
            own: cpu_time(),
            reaped: reaped_children_cpu_time(),
            running: hosts
                .iter()
                .filter_map(|&p| process_cpu_time(p).map(|t| (p, t)))
                .collect(),
        }
    }

    /// This process's CPU time since the mark, and its hosts': the ones reaped since,
    /// plus the ones in `hosts` (running now), less what those running at the mark had
    /// used by then (each of them is still running or was reaped since).
    pub fn since(&self, hosts: &[u32]) -> (Duration, Duration) {
        let own = cpu_time().saturating_sub(self.own);
        let reaped = reaped_children_cpu_time().saturating_sub(self.reaped);
        let running: Duration = hosts.iter().filter_map(|&p| process_cpu_time(p)).sum();
        let before: Duration = self.running.iter().map(|(_, t)| *t).sum();
        (own, (reaped + running).saturating_sub(before))
    }
}

/// The peak resident memory of the plugin hosts, each read from `/proc/<pid>/status`
/// (`VmHWM`) while it runs.
#[derive(Default)]
pub struct HostMemory {
    /// Not hosts: other children of this process.
    pub others: Vec<u32>,
    /// The last `VmHWM` read of every host seen, by pid.
    pub peaks: BTreeMap<u32, u64>,
}

impl HostMemory {
    /// Reads every running child but `others`; returns the pids read.
    pub fn sample(&mut self) -> Vec<u32> {
        let mut read = Vec::new();
        for pid in children() {
            if self.others.contains(&pid) {
                continue;
            }
            if let Some(hwm) = process_status_bytes(&pid.to_string(), "VmHWM") {
                let peak = self.peaks.entry(pid).or_default();
                *peak = (*peak).max(hwm);
                read.push(pid);
            }
        }
        read
    }
}
