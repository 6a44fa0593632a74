//! `--input FILE`: named tensors from safetensors, NumPy `.npy` (one array,
//! named after the file) or `.npz` (an archive of `.npy` arrays).

use crate::CliError;
use chainrule::Tensor;
use std::io::Read;
use std::path::Path;

fn bad(path: &Path, msg: impl std::fmt::Display) -> CliError {
    CliError::Input(format!("{}: {msg}", path.display()))
}

/// The named tensors in the file at `path`: a regular `.safetensors`,
/// `.npy` or `.npz` file.
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, CliError> {
    // Only regular files: opening a FIFO or a device would block or never end.
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(bad(path, "not a regular file")),
        Err(e) => return Err(bad(path, format!("cannot read: {e}"))),
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "safetensors" | "npy" | "npz") {
        return Err(bad(path, "expected a .safetensors, .npy or .npz file"));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    read_bytes(path, &bytes)
}

/// The tensors in `bytes`, read as the kind of file `path` names by its
/// extension (what [`read`] does once the file is read; the fuzz targets
/// call it directly).
pub fn read_bytes(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>, CliError> {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "safetensors" => {
            chainrule::nn::parse_tensors(bytes, path).map_err(|e| CliError::Input(e.to_string()))
        }
        "npy" => {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("x")
                .to_string();
            Ok(vec![(name, parse_npy(bytes).map_err(|m| bad(path, m))?)])
        }
        "npz" => {
            let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
                .map_err(|e| bad(path, format!("not an .npz (zip) archive: {e}")))?;
            let mut out = Vec::new();
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i).map_err(|e| bad(path, e))?;
                let name = entry.name().trim_end_matches(".npy").to_string();
                // Sized before it is inflated: no array of the command's
                // limit needs more (a zip bomb is refused, not unpacked).
                let limit = (crate::eval::MAX_ELEMENTS as u64) * 8 + (1 << 20);
                if entry.size() > limit {
                    return Err(bad(path, format!("array `{name}` is too large to unpack")));
                }
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(limit)
                    .read_to_end(&mut bytes)
                    .map_err(|e| bad(path, e))?;
                let t = parse_npy(&bytes).map_err(|m| bad(path, format!("array `{name}`: {m}")))?;
                out.push((name, t));
            }
            Ok(out)
        }
        _ => Err(bad(path, "expected a .safetensors, .npy or .npz file")),
    }
}

/// A NumPy `.npy` array of little-endian f8, f4, i8 or i4, C order.
pub fn parse_npy(b: &[u8]) -> Result<Tensor, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (len, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = b
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated .npy header")?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        Some(header[i + key.len() + 2..].trim_start_matches([':', ' ']))
    };
    let descr = field("descr")
        .and_then(|s| s.strip_prefix('\''))
        .and_then(|s| s.split('\'').next())
        .ok_or("no descr in the header")?;
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or("no shape in the header")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad dimension `{s}`"))
        })
        .collect::<Result<_, _>>()?;
    let n = crate::eval::element_count(&shape)
        .filter(|&n| n <= crate::eval::MAX_ELEMENTS)
        .ok_or_else(|| {
            format!(
                "shape {shape:?} has more than {} elements (the command's limit)",
                crate::eval::MAX_ELEMENTS
            )
        })?;
    let data = &b[start + len..];
    let (size, conv): (usize, fn(&[u8]) -> f64) = match descr {
        "<f8" => (8, |c| f64::from_le_bytes(c.try_into().unwrap())),
        "<f4" => (4, |c| f32::from_le_bytes(c.try_into().unwrap()) as f64),
        "<i8" => (8, |c| i64::from_le_bytes(c.try_into().unwrap()) as f64),
        "<i4" => (4, |c| i32::from_le_bytes(c.try_into().unwrap()) as f64),
        other => return Err(format!("dtype `{other}` is not supported (f8, f4, i8, i4)")),
    };
    if data.len() < n * size {
        return Err(format!(
            "truncated data: {} bytes for {n} values of {size} bytes",
            data.len()
        ));
    }
    let values: Vec<f64> = data[..n * size].chunks_exact(size).map(conv).collect();
    Tensor::try_from_vec(values, &shape).map_err(|e| e.to_string())
}
