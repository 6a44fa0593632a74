//! `--set NAME=VALUE` values (numbers, nested lists, generators) on any text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chainrule_cli::fuzzing::set_value(data);
});
