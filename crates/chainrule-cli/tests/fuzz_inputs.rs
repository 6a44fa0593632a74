//! The fuzz targets' bodies (`chainrule_cli::fuzzing`) on every input of the
//! kept corpus (`fuzz/corpus`: the hostile inputs found so far) and on
//! random inputs: the CI stand-in for a coverage-guided run, which needs a
//! nightly toolchain (`cargo +nightly fuzz run TARGET`, see the README).
//!
//! The bodies recurse once per level of an expression, as the command does
//! on its large stack: the tests run them on a thread with one too.

use chainrule_cli::fuzzing;
use proptest::prelude::*;
use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 4] = [
    ("parse", fuzzing::parse_and_reprint),
    ("eval_symbolic", fuzzing::eval_and_differentiate),
    ("set_value", fuzzing::set_value),
    ("tensor_files", fuzzing::tensor_file),
];

fn on_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn every_corpus_input_passes_its_target() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut count = 0;
    for (name, target) in TARGETS {
        let dir = corpus.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{name}: an empty corpus");
        count += inputs.len();
        on_big_stack(move || {
            for path in inputs {
                let data = std::fs::read(&path).unwrap();
                target(&data);
            }
        });
    }
    assert!(count >= 40, "{count} corpus inputs");
}

/// Bytes that are mostly the language's own characters (random bytes
/// alone rarely parse).
fn expression_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "x",
        "y",
        "z",
        "X",
        "1",
        "0",
        "2.5",
        "1e308",
        "-",
        "+",
        "*",
        "/",
        "^",
        "@",
        "(",
        ")",
        ",",
        ".T",
        "sum(",
        "max(",
        "norm(",
        "sqrt(",
        "log(",
        "exp(",
        "softmax(",
        "maximum(",
        "dot(",
        "outer(",
        "step(",
        "relu(",
        "logsumexp(",
        " ",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|p| p.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn random_expressions_pass_the_expression_targets(data in expression_bytes()) {
        fuzzing::parse_and_reprint(&data);
        fuzzing::eval_and_differentiate(&data);
    }

    #[test]
    fn random_bytes_pass_every_target(data in prop::collection::vec(any::<u8>(), 0..256)) {
        for (_, target) in TARGETS {
            target(&data);
        }
    }

    #[test]
    fn random_values_pass_the_set_value_target(
        data in "(randn|rand|zeros|ones|eye|arange)?\\(?[0-9, \\[\\]\\.e-]{0,24}\\)?"
    ) {
        fuzzing::set_value(data.as_bytes());
    }
}
