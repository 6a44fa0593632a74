//! The layering the interpreter stack rests on, checked on the sources:
//! the primitives (`ops/`, `kernels/`) know nothing of the modes, and the
//! modes know no particular primitive (they read the rule table).

use std::fs;
use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The code of a file, comments removed (a doc comment may name anything).
fn code(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn primitives_do_not_import_the_modes() {
    let mut files = sources(&src().join("ops"));
    files.extend(sources(&src().join("kernels")));
    assert!(files.len() >= 10, "found {} files", files.len());
    for file in files {
        let text = code(&file);
        for module in ["autograd", "forward", "graph", "batching"] {
            for pattern in [format!("crate::{module}"), format!("{module}::")] {
                assert!(
                    !text.contains(&pattern),
                    "{} names `{pattern}`: primitives bind through crate::interp only",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn modes_name_no_particular_primitive() {
    let mut files = sources(&src().join("autograd"));
    for f in ["forward.rs", "batching.rs", "interp.rs", "graph/trace.rs"] {
        files.push(src().join(f));
    }
    for file in files {
        let text = code(&file);
        for pattern in ["Prim::", "UnaryOp", "BinaryOp", "ReduceOp", "CompareOp"] {
            let hits: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(pattern) && !l.contains("Prim::identity()"))
                .collect();
            assert!(
                hits.is_empty(),
                "{} names a primitive ({pattern}): {hits:?}",
                file.display()
            );
        }
    }
}

/// The scan itself finds what it looks for.
#[test]
fn the_scan_sees_imports() {
    let text = code(&src().join("func.rs"));
    assert!(text.contains("forward::"));
}
