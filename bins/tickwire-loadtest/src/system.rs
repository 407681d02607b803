//! What the load generator asks of the operating system: its open-file
//! limit and another process's resident memory.

use std::io;

/// File descriptors a process keeps for itself besides its connections
/// (standard streams, the runtime, the publisher's and negotiate
/// connections).
pub const RESERVED_FDS: u64 = 64;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns
/// the limit now in force.
pub fn raise_nofile_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The resident memory of process `pid` in bytes (`VmRSS` of
/// `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no VmRSS line in /proc/{pid}/status"),
        )
    })
}

/// `VmRSS:    1234 kB` → 1234 × 1024.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => kib.checked_mul(1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_lines() {
        let status = "Name:\ttickwire\nVmPeak:\t  999 kB\nVmRSS:\t   52344 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(52_344 * 1024));
        assert_eq!(parse_vm_rss("VmRSS: x kB"), None);
        assert_eq!(parse_vm_rss("VmRSS: 1 MB"), None);
        assert_eq!(parse_vm_rss("Name: x"), None);
    }

    #[test]
    fn this_process_has_a_size_and_a_limit() {
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
        assert!(raise_nofile_limit().unwrap() > 0);
    }
}
