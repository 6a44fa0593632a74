//! The safetensors, .npy and .npz readers on any bytes (the first byte picks
//! the format).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chainrule_cli::fuzzing::tensor_file(data);
});
