//! The limit on open file descriptors of a process that holds many connections (the
//! hub: three descriptors per attached bridge and shared upstream, three per upstream
//! process). The usual soft limit, 1024, would stop it at a few hundred connections,
//! while the hard limit is far higher on every current system; [`raise`] lifts the soft
//! limit to the hard one. Children should not inherit it: a program that passes
//! descriptors to `select()` fails on any above 1023, so a child gets the original
//! soft limit back ([`restore_in_child`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// `OPEN_MAX` of macOS, the most a process may have open there by default.
const MACOS_OPEN_MAX: libc::rlim_t = 10_240;

/// The soft limit before [`raise`], if it raised it (`u64::MAX`: not raised).
static ORIGINAL_SOFT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Raise this process's soft limit on open descriptors to its hard limit. Returns the
/// limit in force afterwards.
pub fn raise() -> std::io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur >= limit.rlim_max {
        return Ok(limit.rlim_cur);
    }
    // macOS refuses a soft limit above its per-process maximum (10240 by default) even
    // when the hard limit is unlimited; that maximum is then the one to ask for.
    for wanted in [limit.rlim_max, limit.rlim_max.min(MACOS_OPEN_MAX)] {
        let raised = libc::rlimit { rlim_cur: wanted, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            ORIGINAL_SOFT.store(limit.rlim_cur, Ordering::Relaxed);
            return Ok(wanted);
        }
    }
    Err(std::io::Error::last_os_error())
}

/// In a forked child before exec: put back the soft limit [`raise`] replaced, if it did.
/// Only an atomic load and two system calls, so it may run between fork and exec.
pub fn restore_in_child() {
    let original = ORIGINAL_SOFT.load(Ordering::Relaxed);
    if original == u64::MAX {
        return;
    }
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = original.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
