//! Saving and loading tensors and module parameters in the safetensors format
//! (readable by the Python `safetensors` package and by PyTorch, JAX, candle…).

use super::{Buffer, Param, Parameters};
use crate::error::{Error, Result};
use crate::{DType, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

fn to_bytes(t: &Tensor) -> (Dtype, Vec<u8>) {
    /// The elements' little-endian bytes.
    fn le<T: crate::Scalar, const N: usize>(t: &Tensor, bytes: fn(T) -> [u8; N]) -> Vec<u8> {
        t.to_vec::<T>().into_iter().flat_map(bytes).collect()
    }
    match t.dtype() {
        DType::F32 => (Dtype::F32, le(t, f32::to_le_bytes)),
        DType::F64 => (Dtype::F64, le(t, f64::to_le_bytes)),
        DType::I32 => (Dtype::I32, le(t, i32::to_le_bytes)),
        DType::I64 => (Dtype::I64, le(t, i64::to_le_bytes)),
        DType::Bool => (Dtype::BOOL, le(t, |b: bool| [b as u8])),
    }
}

/// Writes named tensors to `path` through [`crate::files::replace_file`]: a
/// failure never leaves a partial file behind, an existing file is replaced
/// only once the new one is on disk, a symbolic link's target is written
/// (the link stays), and a path that is not a regular file is refused.
pub fn save_tensors(path: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let (dtype, data) = to_bytes(t);
            (name.clone(), dtype, t.shape().to_vec(), data)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::file(path, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let encoded =
        safetensors::serialize(views, None).map_err(|e| Error::file(path, e.to_string()))?;
    crate::files::replace_file_with_bytes(path, &encoded)
}

/// Reads every tensor of a safetensors file (F32, F64, I32, I64 and BOOL), sorted by name.
pub fn load_tensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    parse_tensors(&bytes, path)
}

/// The tensors of safetensors `bytes` (F32, F64, I32, I64 and BOOL), sorted by name;
/// errors name `origin` (the file they came from).
pub fn parse_tensors(bytes: &[u8], origin: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = origin.as_ref();
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    let mut out = Vec::new();
    let mut names: Vec<&str> = file.names();
    names.sort_unstable();
    for name in names {
        let view = file
            .tensor(name)
            .map_err(|e| Error::file(path, e.to_string()))?;
        let shape = view.shape().to_vec();
        let data = view.data();
        /// The elements read from their little-endian bytes.
        fn read<T: crate::Scalar, const N: usize>(
            data: &[u8],
            shape: &[usize],
            from: fn([u8; N]) -> T,
        ) -> Result<Tensor> {
            let values = data.chunks_exact(N).map(|c| from(c.try_into().unwrap()));
            Tensor::try_from_vec(values.collect::<Vec<T>>(), shape)
        }
        let tensor = match view.dtype() {
            Dtype::F32 => read(data, &shape, f32::from_le_bytes),
            Dtype::F64 => read(data, &shape, f64::from_le_bytes),
            Dtype::I32 => read(data, &shape, i32::from_le_bytes),
            Dtype::I64 => read(data, &shape, i64::from_le_bytes),
            Dtype::BOOL if data.iter().all(|&b| b <= 1) => read(data, &shape, |[b]: [u8; 1]| b == 1),
            other => {
                return Err(Error::file(
                    path,
                    format!("tensor `{name}` has dtype {other:?}; supported: F32, F64, I32, I64 and BOOL (0 or 1)"),
                ))
            }
        }
        .map_err(|e| Error::file(path, format!("tensor `{name}`: {e}")))?;
        out.push((name.to_string(), tensor));
    }
    Ok(out)
}

/// Saves a module's parameters and buffers under their dotted names
/// (refusing a model that names two tensors alike: it could not be loaded).
pub fn save(module: &dyn Parameters, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let tensors = state(module);
    check_unique(path, &tensors)?;
    save_tensors(path, &tensors)
}

/// Refuses tensors named alike (a model whose layers share a name).
pub(crate) fn check_unique(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    match tensors.iter().find(|(n, _)| !seen.insert(n.as_str())) {
        Some((name, _)) => Err(Error::file(
            path,
            format!("the model names two tensors `{name}` (give its layers distinct names)"),
        )),
        None => Ok(()),
    }
}

/// A module's parameters and buffers as named tensors (what [`save`] writes).
pub fn state(module: &dyn Parameters) -> Vec<(String, Tensor)> {
    let params = module
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.value().detach()));
    let buffers = module
        .named_buffers()
        .into_iter()
        .map(|(n, b)| (n, b.value()));
    params.chain(buffers).collect()
}

/// A parameter or a buffer: where a stored tensor goes.
pub(crate) enum Slot {
    Param(Param),
    Buffer(Buffer),
}

impl Slot {
    fn value(&self) -> Tensor {
        match self {
            Slot::Param(p) => p.value(),
            Slot::Buffer(b) => b.value(),
        }
    }

    fn set(&self, t: &Tensor) -> Result<()> {
        match self {
            Slot::Param(p) => p.set(t),
            Slot::Buffer(b) => b.set(t),
        }
    }
}

/// Loads parameters and buffers saved by [`save`] into `module`. The file
/// must hold exactly the module's tensors, with their shapes and dtypes;
/// otherwise nothing is changed and the error names the first mismatch.
pub fn load_into(module: &dyn Parameters, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let stored = load_tensors(path)?;
    load_state(module, stored, &path.display().to_string())
}

/// [`load_into`] from named tensors; errors name `origin`.
pub fn load_state(
    module: &dyn Parameters,
    stored: Vec<(String, Tensor)>,
    origin: &str,
) -> Result<()> {
    plan_state(module, stored, origin)?.apply();
    Ok(())
}

/// Stored tensors matched to a module's parameters and buffers, every
/// name, shape and dtype checked: applying it cannot fail.
pub struct StatePlan(Vec<(Slot, Tensor)>);

impl StatePlan {
    /// Sets each matched parameter and buffer to its stored tensor.
    pub fn apply(self) {
        for (slot, t) in self.0 {
            slot.set(&t)
                .expect("shapes and dtypes were checked by plan_state");
        }
    }
}

/// Checks `stored` against `module` (exactly its tensors, with their shapes
/// and dtypes, no name twice) without changing anything; errors name
/// `origin` and the first mismatch.
pub fn plan_state(
    module: &dyn Parameters,
    mut stored: Vec<(String, Tensor)>,
    origin: &str,
) -> Result<StatePlan> {
    let path = origin;
    let slots = module
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, Slot::Param(p)))
        .chain(
            module
                .named_buffers()
                .into_iter()
                .map(|(n, b)| (n, Slot::Buffer(b))),
        );
    let mut updates = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, slot) in slots {
        if !seen.insert(name.clone()) {
            return Err(Error::file(
                path,
                format!("the model names two tensors `{name}` (give its layers distinct names)"),
            ));
        }
        let Some(i) = stored.iter().position(|(n, _)| *n == name) else {
            return Err(Error::file(
                path,
                format!("has no tensor `{name}`, which the model needs"),
            ));
        };
        let (_, t) = stored.swap_remove(i);
        let current = slot.value();
        if t.shape() != current.shape() || t.dtype() != current.dtype() {
            return Err(Error::file(
                path,
                format!(
                    "tensor `{name}` is {:?} {:?} but the model's is {:?} {:?}",
                    t.dtype(),
                    t.shape(),
                    current.dtype(),
                    current.shape()
                ),
            ));
        }
        updates.push((slot, t));
    }
    if let Some((extra, _)) = stored.first() {
        return Err(Error::file(
            path,
            format!("holds tensor `{extra}`, which the model does not have"),
        ));
    }
    Ok(StatePlan(updates))
}
