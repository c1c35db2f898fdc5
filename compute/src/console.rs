//! An instance's serial console log: what GetConsoleOutput returns, and how tests and the
//! accelerator probe see that a guest came up.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::Error;

/// The line prefix Koala's test guest prints on its console once it has read its config drive:
/// `KOALA-GUEST-READY instance-id=<id> key=<key name>`.
pub const GUEST_READY: &str = "KOALA-GUEST-READY";

/// The complete lines of the console log at `path` that start with `prefix` (after any
/// terminal escape noise before it). A line still being written (QEMU's serial port writes
/// byte by byte) is not complete until its newline. A log not yet created has none.
pub fn lines_starting_with(path: &Path, prefix: &str) -> Result<Vec<String>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read the console log", path)(e)),
    };
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(last_newline) => &bytes[..=last_newline],
        None => return Ok(Vec::new()),
    };
    Ok(String::from_utf8_lossy(complete)
        .lines()
        .filter_map(|line| line.find(prefix).map(|at| line[at..].trim_end().to_owned()))
        .collect())
}

/// Waits until the console log holds at least `count` lines starting with `prefix`, polling
/// every 100 ms; returns those lines, or `None` when `timeout` passes first.
pub fn wait_for_lines(
    path: &Path,
    prefix: &str,
    count: usize,
    timeout: Duration,
) -> Result<Option<Vec<String>>, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = lines_starting_with(path, prefix)?;
        if lines.len() >= count {
            return Ok(Some(lines));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_marker_lines_amid_console_noise() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        assert!(lines_starting_with(&log, GUEST_READY).unwrap().is_empty());
        std::fs::write(
            &log,
            b"\x1bc\x1b[?7lSeaBIOS\r\nBooting from ROM..\x1b[2JKOALA-GUEST-READY instance-id=i-1 key=k\r\n\
              noise \xff\nKOALA-GUEST-READY instance-id=i-1 key=k\nKOALA-GUEST-READY inst",
        )
        .unwrap();
        // The last line is still being written: it does not count yet.
        let lines = lines_starting_with(&log, GUEST_READY).unwrap();
        assert_eq!(lines, vec!["KOALA-GUEST-READY instance-id=i-1 key=k"; 2]);
        std::fs::write(&log, b"KOALA-GUEST-READY instance-id=i-1").unwrap();
        assert!(lines_starting_with(&log, GUEST_READY).unwrap().is_empty());
        let waited = wait_for_lines(&log, GUEST_READY, 3, Duration::from_millis(250)).unwrap();
        assert_eq!(waited, None);
    }
}
