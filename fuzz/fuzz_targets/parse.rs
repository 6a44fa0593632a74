//! The expression parser on any text: never panics, and what it accepts
//! prints back to an expression that parses to the same tree.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chainrule_cli::fuzzing::parse_and_reprint(data);
});
