//! Writing files and folders so that a crash never leaves a half-written one behind.

use crate::{Result, TrainError};
use std::io::Write;
use std::path::{Path, PathBuf};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` atomically: into a temporary file beside it, flushed to disk,
/// then renamed over `path`.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = sibling(path, ".tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Creates the folder `dest` atomically: `fill` writes its contents into a fresh temporary
/// folder beside `dest`, which is then renamed into place (an existing `dest` is replaced).
/// If `fill` fails, the temporary folder is removed and `dest` is untouched.
pub fn write_dir(dest: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = sibling(dest, ".partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dest.exists() {
        let old = sibling(dest, ".old");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dest, &old).map_err(io(dest))?;
        std::fs::rename(&tmp, dest).map_err(io(dest))?;
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        std::fs::rename(&tmp, dest).map_err(io(dest))?;
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name (same folder, so a rename is atomic).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn failed_fill_leaves_the_old_folder() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("checkpoint-2");
        write_dir(&dest, |d| write_file(&d.join("a"), b"v1")).unwrap();
        let failed = write_dir(&dest, |d| {
            write_file(&d.join("a"), b"v2")?;
            Err(TrainError::EmptyData { path: d.to_path_buf(), detail: String::new() })
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"v1");
        write_dir(&dest, |d| write_file(&d.join("b"), b"v3")).unwrap();
        assert!(!dest.join("a").exists() && dest.join("b").exists(), "replaced whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporaries left behind");
    }
}
