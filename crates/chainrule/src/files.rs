//! Writing a file so that a failure or a crash loses nothing: the new
//! content goes to a temporary file beside the target, is flushed to disk,
//! and only then renamed over the target. A symbolic link is followed (its
//! target is replaced, the link stays a link), and a target that exists but
//! is not a regular file (a directory, a device, a FIFO) is refused.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Links followed before giving up (a loop of links).
const MAX_LINKS: usize = 40;

/// Replaces the file at `path` with what `write` writes to the path it is
/// given (a fresh temporary file in the same folder). The target is
/// untouched unless `write` succeeds and the new content reached the disk.
pub fn replace_file(
    path: impl AsRef<Path>,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    let target = resolve_links(path)?;
    let existing = match std::fs::metadata(&target) {
        Ok(m) if m.is_file() => Some(m),
        Ok(_) => {
            return Err(Error::file(
                path,
                "exists and is not a regular file; refusing to replace it",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::file(path, format!("cannot write: {e}"))),
    };
    let tmp =
        create_temporary(&target).map_err(|e| Error::file(path, format!("cannot write: {e}")))?;
    let done = write(&tmp).and_then(|_| {
        std::fs::File::open(&tmp)?.sync_all()?;
        if let Some(m) = &existing {
            std::fs::set_permissions(&tmp, m.permissions())?;
        }
        std::fs::rename(&tmp, &target)
    });
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::file(path, format!("cannot write: {e}")));
    }
    // The rename itself reaches the disk with the folder (best effort: not
    // every platform can open a folder).
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// [`replace_file`] with the bytes to write.
pub fn replace_file_with_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    replace_file(path, |tmp| std::fs::write(tmp, bytes))
}

/// The path a write to `path` lands on: `path` with every symbolic link
/// along the final component followed (a dangling link gives its target).
fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut cur = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&cur)
                    .map_err(|e| Error::file(path, format!("cannot read the link: {e}")))?;
                cur = match cur.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => return Ok(cur),
        }
    }
    Err(Error::file(path, "too many levels of symbolic links"))
}

/// A new, empty file beside `target` whose name no other file has. It keeps
/// the target's extension (writers that pick a format by it, as image
/// encoders do, see the same one).
fn create_temporary(target: &Path) -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    let ext = target
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = target.with_file_name(format!(".{name}.tmp-{}-{n}{ext}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(_) => return Ok(tmp),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}
