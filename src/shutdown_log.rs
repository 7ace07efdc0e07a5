//! `[shutdown] log`: the file the shutdown report is appended to (DESIGN §4, §9). It is
//! never a way in: a symlink planted at the path (outside `/dev/`, where `/dev/stderr`
//! is one by design) or a directory is never written through, the file is opened with
//! `O_NOFOLLOW` and created 0640, and every failure is a warning: the report is a record,
//! never a reason to change gsup's exit code.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Mode of a log file gsup creates: the group (an operator's log reader) may read it.
const MODE: u32 = 0o640;

/// Why `path` will not be written, when it can be told before writing: a symlink outside
/// `/dev/`, or a directory. Said at start-up, by `check` and at shutdown.
pub fn problem(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let shown = path.display();
    if meta.file_type().is_symlink() && !under_dev(path) {
        return Some(format!(
            "[shutdown] log {shown} is a symlink: gsup never writes through one (outside /dev/); the shutdown report goes to the log only"
        ));
    }
    if meta.is_dir() {
        return Some(format!(
            "[shutdown] log {shown} is a directory: the shutdown report goes to the log only"
        ));
    }
    if !meta.is_file() && !under_dev(path) {
        // A FIFO would block the open (and gsup's event loop) until a reader comes.
        return Some(format!(
            "[shutdown] log {shown} is not a regular file (a FIFO, socket or device): the shutdown report goes to the log only"
        ));
    }
    None
}

/// `/dev/stderr` and friends are links to the process's own descriptors: allowed.
fn under_dev(path: &Path) -> bool {
    path.starts_with("/dev/")
}

/// Appends one line (the redacted report) to `path`. The error says what to warn.
pub fn append(path: &Path, line: &str) -> Result<(), String> {
    if let Some(problem) = problem(path) {
        return Err(problem);
    }
    write_line(path, line)
}

/// The open and the write of `append`, safe by themselves against what may be planted
/// after `problem` looked (a symlink, a FIFO).
fn write_line(path: &Path, line: &str) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true).mode(MODE);
    let checked = !under_dev(path);
    if checked {
        // Checked above, but a link planted between the check and the open must not
        // redirect the write either; nor may a FIFO planted meanwhile block the open
        // (O_NONBLOCK: ENXIO without a reader; no effect on a regular file).
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let written = options.open(path).and_then(|mut file| {
        if checked && !file.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut text = line.to_string();
        text.push('\n');
        file.write_all(text.as_bytes())?;
        file.flush()
    });
    written.map_err(|error: io::Error| {
        let why = if error.raw_os_error() == Some(libc::ELOOP) {
            "it is a symlink".to_string()
        } else if error.raw_os_error() == Some(libc::ENXIO) {
            "not a regular file (a FIFO without a reader)".to_string()
        } else {
            error.to_string()
        };
        format!(
            "cannot append the shutdown report to [shutdown] log {}: {why}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn a_new_file_is_0640_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shutdown.log");
        append(&path, "one").unwrap();
        append(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
    }

    #[test]
    fn a_symlink_or_directory_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep\n").unwrap();
        let link = dir.path().join("shutdown.log");
        symlink(&target, &link).unwrap();
        assert!(problem(&link).unwrap().contains("symlink"));
        assert!(append(&link, "report").unwrap_err().contains("symlink"));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
        assert!(append(dir.path(), "report").unwrap_err().contains("directory"));
    }

    /// A FIFO at the path (planted, or a mistake): opening it for writing with no reader
    /// would block gsup's event loop at shutdown for ever, past every deadline. It is
    /// refused at once, and said at start-up.
    #[test]
    fn a_fifo_is_never_opened_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("shutdown.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        assert!(problem(&fifo).is_some_and(|p| p.contains("not a regular file")));
        let (done, finished) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = done.send(append(&path, "report"));
        });
        let result = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("append blocked on a FIFO without a reader");
        assert!(result.unwrap_err().contains("not a regular file"));
        // Planted after the check: the open itself neither blocks nor writes, with or
        // without a reader.
        let (done, finished) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = done.send(write_line(&path, "report"));
        });
        let result = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the open blocked on a FIFO without a reader");
        assert!(result.unwrap_err().contains("not a regular file"));
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        assert!(write_line(&fifo, "report").unwrap_err().contains("not a regular file"));
        let mut read = String::new();
        let _ = std::io::Read::read_to_string(&mut &reader, &mut read);
        assert_eq!(read, "", "the report went into the FIFO");
    }

    #[test]
    fn dev_links_and_full_devices() {
        assert_eq!(problem(Path::new("/dev/stderr")), None);
        let error = append(Path::new("/dev/full"), "report").unwrap_err();
        assert!(error.contains("/dev/full"), "{error}");
    }
}
