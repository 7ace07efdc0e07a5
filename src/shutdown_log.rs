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
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true).mode(MODE);
    if !under_dev(path) {
        // Checked above, but a link planted between the check and the open must not
        // redirect the write either.
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let written = options.open(path).and_then(|mut file| {
        let mut text = line.to_string();
        text.push('\n');
        file.write_all(text.as_bytes())?;
        file.flush()
    });
    written.map_err(|error: io::Error| {
        let why = if error.raw_os_error() == Some(libc::ELOOP) {
            "it is a symlink".to_string()
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

    #[test]
    fn dev_links_and_full_devices() {
        assert_eq!(problem(Path::new("/dev/stderr")), None);
        let error = append(Path::new("/dev/full"), "report").unwrap_err();
        assert!(error.contains("/dev/full"), "{error}");
    }
}
