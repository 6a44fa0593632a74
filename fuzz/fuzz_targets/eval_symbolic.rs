//! Any expression that parses: evaluated in reverse mode and differentiated
//! symbolically on fixed variables, without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chainrule_cli::fuzzing::eval_and_differentiate(data);
});
