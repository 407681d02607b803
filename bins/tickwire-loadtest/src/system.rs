//! What the load generator asks of the operating system: its open-file
//! limit, and another process's resident memory and CPU time, the
//! machine's load and the CPU time the host gave to other machines (read
//! from `/proc` with the `procfs` crate).

use std::io;

use procfs::process::Process;
use procfs::{Current, CurrentSI, KernelStats, LoadAverage};

/// File descriptors a process keeps for itself besides its connections
/// (standard streams, the runtime, the publisher's and negotiate
/// connections).
pub const RESERVED_FDS: u64 = 64;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns
/// the limit now in force.
pub fn raise_nofile_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

fn process(pid: u32) -> io::Result<Process> {
    let pid = i32::try_from(pid).map_err(io::Error::other)?;
    Process::new(pid).map_err(io::Error::other)
}

/// The resident memory of process `pid` in bytes (`VmRSS` of
/// `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = process(pid)?.status().map_err(io::Error::other)?;
    let kib = status.vmrss.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no VmRSS line in /proc/{pid}/status"),
        )
    })?;
    Ok(kib.saturating_mul(1024))
}

/// The CPU time process `pid` has used so far, user and system, in
/// seconds (`/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = process(pid)?.stat().map_err(io::Error::other)?;
    Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// The machine's one-minute load average (`/proc/loadavg`).
pub fn load_average() -> io::Result<f64> {
    let load = LoadAverage::current().map_err(io::Error::other)?;
    Ok(f64::from(load.one))
}

/// The machine's CPU time so far, in clock ticks, all CPUs (the `cpu` line
/// of `/proc/stat`): what the host gave to other machines while this one
/// had work (steal), and everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineCpu {
    steal: u64,
    total: u64,
}

impl MachineCpu {
    /// The machine's CPU time now.
    pub fn now() -> io::Result<MachineCpu> {
        let t = KernelStats::current().map_err(io::Error::other)?.total;
        let steal = t.steal.unwrap_or(0);
        // Guest time is already counted in user and nice.
        let total = t.user
            + t.nice
            + t.system
            + t.idle
            + t.iowait.unwrap_or(0)
            + t.irq.unwrap_or(0)
            + t.softirq.unwrap_or(0)
            + steal;
        Ok(MachineCpu { steal, total })
    }

    /// The share of the machine's CPU time from `earlier` to `self` that
    /// was stolen, in percent; `None` when no tick passed.
    pub fn steal_pct_since(self, earlier: MachineCpu) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total).filter(|&t| t > 0)?;
        let steal = self.steal.saturating_sub(earlier.steal);
        Some(100.0 * steal as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_a_share_of_the_ticks_between_two_readings() {
        let at = |steal, total| MachineCpu { steal, total };
        assert_eq!(at(30, 1200).steal_pct_since(at(10, 1000)), Some(10.0));
        assert_eq!(at(10, 1200).steal_pct_since(at(10, 1000)), Some(0.0));
        // No time between the two: no share.
        assert_eq!(at(10, 1000).steal_pct_since(at(10, 1000)), None);
        assert_eq!(at(10, 900).steal_pct_since(at(10, 1000)), None);
    }

    #[test]
    fn this_process_has_a_size_a_limit_and_cpu_time() {
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
        assert!(raise_nofile_limit().unwrap() > 0);
        let pid = std::process::id();
        let (before, machine) = (cpu_seconds(pid).unwrap(), MachineCpu::now().unwrap());
        // Busy for longer than a clock tick (10 ms).
        let start = std::time::Instant::now();
        let mut spin = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        assert!(cpu_seconds(pid).unwrap() > before);
        let steal = MachineCpu::now().unwrap().steal_pct_since(machine).unwrap();
        assert!((0.0..=100.0).contains(&steal), "{steal}");
        assert!(load_average().unwrap() >= 0.0);
    }

    #[test]
    fn a_process_that_does_not_exist_is_an_error() {
        // Beyond any pid_max, and not a pid at all.
        for pid in [i32::MAX as u32, u32::MAX] {
            assert!(rss_bytes(pid).is_err());
            assert!(cpu_seconds(pid).is_err());
        }
    }
}
