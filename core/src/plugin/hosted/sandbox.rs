//! The plugin host's sandbox, applied by the host to itself.
//!
//! In order, before any plugin code runs:
//!
//! 1. every descriptor but standard input, output and error and the host's own three
//!    (library, socket, package) is closed;
//! 2. resource limits: address space, CPU time, open descriptors, no core dumps; hard
//!    limits equal soft ones, so the plugin cannot raise them;
//! 3. `no_new_privs`;
//! 4. a seccomp filter (on x86_64 and aarch64) that kills the process on network sockets,
//!    fork, exec, ptrace, signals to other processes, changing files by path, raising
//!    limits, kernel modules, mounts, namespaces, bpf, io_uring and similar;
//!
//! then the library is loaded (its constructors run under 1-4), and then
//!
//! 5. a second seccomp filter kills the process on any file open: from here on the host
//!    reaches only the descriptors it was handed.
//!
//! The filters allow by default and kill on the listed calls: a list of what to deny
//! keeps working when a libc update starts using a new harmless system call, and
//! everything a plugin could use to reach outside its process is on it.

use super::process::HostLimits;
use std::io;

/// Closes every descriptor above `keep_through`.
pub(crate) fn close_other_descriptors(keep_through: i32) {
    let first = (keep_through + 1) as libc::c_uint;
    // SAFETY: close_range only closes descriptors; nothing in this process uses the
    // closed ones (the host has opened nothing else yet).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) };
    if rc != 0 {
        // Kernels before 5.9: close them one by one.
        for fd in first..4096 {
            // SAFETY: as above.
            unsafe { libc::close(fd as i32) };
        }
    }
}

/// Applies the resource limits and `no_new_privs`.
pub(crate) fn limit(limits: &HostLimits) -> io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let set = |resource, value: u64| {
        setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
    };
    set(Resource::As, limits.memory_bytes)?;
    set(Resource::Cpu, limits.cpu_seconds)?;
    set(Resource::Nofile, limits.open_files)?;
    set(Resource::Core, 0)?;
    rustix::thread::set_no_new_privs(true)?;
    Ok(())
}

/// The system calls the first filter kills on (outside the plugin's reach from the
/// start), and whether the filter applies on this architecture.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod filters {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    use std::collections::BTreeMap;
    use std::io;

    #[cfg(target_arch = "x86_64")]
    const ARCH: TargetArch = TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    const ARCH: TargetArch = TargetArch::aarch64;

    fn err(e: impl std::fmt::Display) -> io::Error {
        io::Error::other(e.to_string())
    }

    fn build(
        rules: BTreeMap<i64, Vec<SeccompRule>>,
        action: SeccompAction,
    ) -> io::Result<BpfProgram> {
        SeccompFilter::new(rules, SeccompAction::Allow, action, ARCH)
            .and_then(BpfProgram::try_from)
            .map_err(err)
    }

    fn apply(program: &BpfProgram) -> io::Result<()> {
        seccompiler::apply_filter(program).map_err(err)
    }

    /// Network, processes, other processes, files by path, limits, the kernel.
    pub(super) fn outside_world() -> io::Result<()> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        let always = [
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_pidfd_open,
            libc::SYS_pidfd_getfd,
            libc::SYS_tkill,
            libc::SYS_setrlimit,
            libc::SYS_prlimit64,
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_io_uring_setup,
            libc::SYS_userfaultfd,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_kexec_load,
            libc::SYS_reboot,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_open_by_handle_at,
            libc::SYS_mknodat,
            libc::SYS_linkat,
            libc::SYS_unlinkat,
            libc::SYS_renameat,
            libc::SYS_renameat2,
            libc::SYS_mkdirat,
            libc::SYS_symlinkat,
            libc::SYS_truncate,
            libc::SYS_fchmodat,
            libc::SYS_fchownat,
        ];
        for call in always {
            rules.insert(call, Vec::new());
        }
        #[cfg(target_arch = "x86_64")]
        for call in [
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_mknod,
            libc::SYS_link,
            libc::SYS_unlink,
            libc::SYS_rename,
            libc::SYS_mkdir,
            libc::SYS_rmdir,
            libc::SYS_symlink,
            libc::SYS_chmod,
            libc::SYS_chown,
            libc::SYS_lchown,
        ] {
            rules.insert(call, Vec::new());
        }
        let pid = u64::from(std::process::id());
        let not_self = || -> io::Result<Vec<SeccompRule>> {
            Ok(vec![
                SeccompRule::new(vec![
                    SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, pid)
                        .map_err(err)?,
                ])
                .map_err(err)?,
            ])
        };
        // Signals go to this process only (abort and raise use tgkill on themselves).
        rules.insert(libc::SYS_kill, not_self()?);
        rules.insert(libc::SYS_tgkill, not_self()?);
        // A new process (clone without CLONE_THREAD) is a fork; threads are allowed.
        rules.insert(
            libc::SYS_clone,
            vec![
                SeccompRule::new(vec![
                    SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Qword,
                        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
                        0,
                    )
                    .map_err(err)?,
                ])
                .map_err(err)?,
            ],
        );
        apply(&build(rules, SeccompAction::KillProcess)?)?;
        // clone3 passes its flags in memory a filter cannot read: refuse it as unknown, so
        // the C library falls back to clone, which the rule above checks.
        let mut clone3 = BTreeMap::new();
        clone3.insert(libc::SYS_clone3, Vec::new());
        apply(&build(clone3, SeccompAction::Errno(libc::ENOSYS as u32))?)
    }

    /// Every file open.
    pub(super) fn files() -> io::Result<()> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for call in [
            libc::SYS_openat,
            libc::SYS_openat2,
            libc::SYS_name_to_handle_at,
        ] {
            rules.insert(call, Vec::new());
        }
        #[cfg(target_arch = "x86_64")]
        for call in [libc::SYS_open, libc::SYS_creat] {
            rules.insert(call, Vec::new());
        }
        apply(&build(rules, SeccompAction::KillProcess)?)
    }

    pub(super) const AVAILABLE: bool = true;
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod filters {
    use std::io;
    pub(super) fn outside_world() -> io::Result<()> {
        Ok(())
    }
    pub(super) fn files() -> io::Result<()> {
        Ok(())
    }
    pub(super) const AVAILABLE: bool = false;
}

/// Whether this build filters system calls (x86_64 and aarch64).
pub const SECCOMP_AVAILABLE: bool = filters::AVAILABLE;

/// The first filter: applied before the library loads.
pub(crate) fn deny_outside_world() -> io::Result<()> {
    filters::outside_world()
}

/// The second filter: applied once the library is loaded.
pub(crate) fn deny_file_opens() -> io::Result<()> {
    filters::files()
}
