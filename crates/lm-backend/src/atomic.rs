//! Writing files and folders so that a reader, or a crash, never sees a half-written one.
//!
//! [`write_file`] writes a temporary file beside the target, flushes it to disk and renames
//! it over the target. [`write_dir`] lets a closure fill a fresh temporary folder
//! `<dest>.partial` and renames it into place, replacing an existing `dest` by way of
//! `<dest>.old`. Renames within one folder are atomic on POSIX file systems.
//!
//! Both report [`AtomicIoError`], which names the path and the step that failed;
//! [`write_dir`] returns the caller's own error type (anything `From<AtomicIoError>`), so
//! the closure can fail with it:
//!
//! ```
//! use lm_backend::atomic::{write_dir, write_file};
//! use lm_backend::LmError;
//!
//! let root = tempfile::tempdir()?;
//! let dest = root.path().join("checkpoint");
//! write_dir(&dest, |dir| -> Result<(), LmError> {
//!     write_file(&dir.join("state.json"), b"{}")?;
//!     Ok(())
//! })?;
//! assert_eq!(std::fs::read(dest.join("state.json"))?, b"{}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed step of an atomic write: what was being done, to which path, and the
/// operating system's error.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot {action}: {source}")]
pub struct AtomicIoError {
    /// The step, e.g. `"write"` or `"rename into place"`.
    pub action: &'static str,
    /// The file or folder the step concerned.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

/// The error constructor of one step on `path`.
fn failed<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AtomicIoError + 'a {
    move |source| AtomicIoError { action, path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` atomically: into the temporary file `<path>.tmp` beside it,
/// flushed to disk, then renamed over `path`.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), AtomicIoError> {
    write_file_with(path, |tmp| {
        let mut file = std::fs::File::create(tmp).map_err(failed("create", tmp))?;
        file.write_all(bytes).map_err(failed("write", tmp))?;
        file.sync_all().map_err(failed("flush to disk", tmp))
    })
}

/// Creates the file `path` atomically through `write`, which writes it at the temporary
/// path it is given (`<path>.tmp`, beside `path`), for writers that take a path rather than
/// bytes (e.g. a safetensors writer); the finished file is renamed over `path`. If `write`
/// fails, the temporary file is removed, `path` is untouched and `write`'s error is returned.
pub fn write_file_with<E: From<AtomicIoError>>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let tmp = sibling(path, ".tmp")?;
    let result = write(&tmp)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| E::from(failed("rename into place", path)(e))));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates the folder `dest` atomically: `fill` writes its contents into the fresh
/// temporary folder `<dest>.partial` beside it (parent folders are created), which is then
/// renamed into place. An existing `dest` (a folder or a file) is moved to `<dest>.old`
/// first and removed after the rename; should that rename fail, it is moved back.
///
/// If `fill` fails, the temporary folder is removed, `dest` is untouched and `fill`'s
/// error is returned.
pub fn write_dir<E: From<AtomicIoError>>(dest: &Path, fill: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E> {
    let tmp = sibling(dest, ".partial")?;
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(failed("remove a stale temporary folder", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(failed("create folder", &tmp))?;
    let result = fill(&tmp).and_then(|()| replace(&tmp, dest).map_err(E::from));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Renames the finished folder `tmp` to `dest`, replacing what `dest` holds.
fn replace(tmp: &Path, dest: &Path) -> Result<(), AtomicIoError> {
    // `symlink_metadata`: a dangling link at `dest` is replaced too.
    if std::fs::symlink_metadata(dest).is_err() {
        return std::fs::rename(tmp, dest).map_err(failed("rename into place", dest));
    }
    let old = sibling(dest, ".old")?;
    let _ = remove(&old);
    std::fs::rename(dest, &old).map_err(failed("move aside", dest))?;
    if let Err(e) = std::fs::rename(tmp, dest) {
        let _ = std::fs::rename(&old, dest);
        return Err(failed("rename into place", dest)(e));
    }
    remove(&old).map_err(failed("remove the replaced copy", &old))
}

/// Removes a folder with its contents, or a file.
fn remove(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// `path` with `suffix` appended to its file name (same folder, so a rename is atomic).
fn sibling(path: &Path, suffix: &str) -> Result<PathBuf, AtomicIoError> {
    let Some(name) = path.file_name() else {
        let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path does not end in a name");
        return Err(AtomicIoError { action: "write beside", path: path.to_path_buf(), source });
    };
    let mut name = name.to_os_string();
    name.push(suffix);
    Ok(path.with_file_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LmError;

    #[test]
    fn file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_file(&p, b"one").unwrap();
        write_file(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left behind");
    }

    #[test]
    fn a_failed_writer_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache.safetensors");
        write_file_with(&p, |tmp| write_file_with_bytes(tmp, b"one")).unwrap();
        let failed = write_file_with(&p, |tmp| {
            write_file_with_bytes(tmp, b"half")?;
            Err(LmError::input("writer", "fails on purpose"))
        });
        assert!(matches!(failed, Err(LmError::Input { name: "writer", .. })));
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left behind");
    }

    /// A plain (not atomic) write, as a path-taking writer would do.
    fn write_file_with_bytes(path: &Path, bytes: &[u8]) -> Result<(), LmError> {
        std::fs::write(path, bytes).map_err(|e| LmError::io(path, e))
    }

    #[test]
    fn failed_fill_leaves_the_old_folder() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("checkpoint-2");
        write_dir(&dest, |d| write_file(&d.join("a"), b"v1")).unwrap();
        let failed = write_dir(&dest, |d| {
            write_file(&d.join("a"), b"v2")?;
            Err(LmError::input("fill", "fails on purpose"))
        });
        assert!(matches!(failed, Err(LmError::Input { name: "fill", .. })));
        assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"v1");
        write_dir(&dest, |d| write_file(&d.join("b"), b"v3")).unwrap();
        assert!(!dest.join("a").exists() && dest.join("b").exists(), "replaced whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporaries left behind");
    }

    #[test]
    fn a_file_at_dest_is_replaced_and_parents_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        std::fs::write(&dest, "not a folder").unwrap();
        write_dir(&dest, |d| write_file(&d.join("a"), b"v1")).unwrap();
        assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"v1");
        let nested = dir.path().join("x/y/z");
        write_dir(&nested, |d| write_file(&d.join("a"), b"v2")).unwrap();
        assert_eq!(std::fs::read(nested.join("a")).unwrap(), b"v2");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporaries left behind");
    }

    #[test]
    fn a_path_without_a_name_is_an_error() {
        let e = write_dir(Path::new("/"), |_| Ok::<(), AtomicIoError>(())).unwrap_err();
        assert!(e.to_string().contains("does not end in a name"), "{e}");
    }
}
