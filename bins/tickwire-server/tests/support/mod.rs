//! What the binary's tests share: the server as a process, its stderr as
//! lines.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `binary` as a command with none of the caller's `TICKWIRE_*` variables
/// (they are configuration), stdout discarded and stderr piped.
pub(crate) fn server(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars() {
        if name.starts_with("TICKWIRE_") {
            command.env_remove(name);
        }
    }
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

/// The lines `child` writes to stderr until one makes `done` true (or 20 s
/// pass without a line), then those of the next `settle`; the child is
/// killed after.
pub(crate) fn stderr_until(
    mut child: Child,
    done: impl Fn(&str) -> bool,
    settle: Duration,
) -> Vec<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    // Bounded: the server starts within a second or two.
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        let finished = done(&line);
        lines.push(line);
        if finished {
            break;
        }
    }
    while let Ok(line) = rx.recv_timeout(settle) {
        lines.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}
