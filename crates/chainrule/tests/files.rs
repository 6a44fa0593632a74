//! `files::replace_file` and `nn::save`: a save never destroys what was
//! there. Links are followed, non-files refused, failures leave no file.

use chainrule::files::{replace_file, replace_file_with_bytes};
use chainrule::nn::{load_tensors, save_tensors};
use chainrule::Tensor;
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chainrule-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn no_temporaries(dir: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_failed_write_keeps_the_old_file_and_leaves_nothing() {
    let dir = scratch("fail");
    let path = dir.join("w.bin");
    std::fs::write(&path, b"old").unwrap();
    let e = replace_file(&path, |tmp| {
        std::fs::write(tmp, b"half")?;
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert!(e.to_string().contains("disk full"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    no_temporaries(&dir);
}

#[cfg(unix)]
#[test]
fn a_symlink_is_followed_and_stays_a_link() {
    let dir = scratch("link");
    std::fs::write(dir.join("real.safetensors"), b"old").unwrap();
    std::os::unix::fs::symlink("real.safetensors", dir.join("link.safetensors")).unwrap();
    let t = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    save_tensors(dir.join("link.safetensors"), &[("w".into(), t)]).unwrap();
    let link = std::fs::symlink_metadata(dir.join("link.safetensors")).unwrap();
    assert!(link.file_type().is_symlink());
    let back = load_tensors(dir.join("real.safetensors")).unwrap();
    assert_eq!(back[0].1.to_vec::<f64>(), vec![1.0, 2.0]);
    // A dangling link gets its target created.
    std::os::unix::fs::symlink("new.bin", dir.join("dangling.bin")).unwrap();
    replace_file_with_bytes(dir.join("dangling.bin"), b"hi").unwrap();
    assert_eq!(std::fs::read(dir.join("new.bin")).unwrap(), b"hi");
    no_temporaries(&dir);
}

#[test]
fn a_target_that_is_not_a_regular_file_is_refused() {
    let dir = scratch("notfile");
    let folder = dir.join("folder");
    std::fs::create_dir(&folder).unwrap();
    let e = replace_file_with_bytes(&folder, b"x").unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert!(folder.is_dir());
    #[cfg(unix)]
    if std::path::Path::new("/dev/null").exists() {
        let e = replace_file_with_bytes("/dev/null", b"x").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    }
    no_temporaries(&dir);
}

#[cfg(unix)]
#[test]
fn the_old_file_permissions_are_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("perm");
    let path = dir.join("w.bin");
    std::fs::write(&path, b"old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    replace_file_with_bytes(&path, b"new").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
