//! The ADBench objectives and derivatives against the reference values in
//! `data/golden/` (f64, 1e-9 relative), on the instances shipped in `data/`,
//! and the readers' errors on bad files.

use chainrule_adbench::{ba, gmm, lstm};

fn data(rel: &str) -> std::path::PathBuf {
    chainrule_adbench::test_data(rel)
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        "{what}: {a} vs {b} (diff {:e})",
        (a - b).abs()
    );
}

fn expected() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(data("golden/adbench_test_expected.json")).unwrap(),
    )
    .unwrap()
}

/// (file, fields…) rows of golden/objectives.txt.
fn objectives() -> Vec<(String, Vec<f64>)> {
    std::fs::read_to_string(data("golden/objectives.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next().unwrap().to_string();
            (name, f.map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

#[test]
fn gmm_unit_test_instance() {
    let e = &expected()["gmm_test"];
    let input = gmm::read(&data("gmm/test.txt")).unwrap();
    let (value, grad) = gmm::objective_and_gradient(&input).unwrap();
    close(value, e["objective"].as_f64().unwrap(), "objective");
    let want: Vec<f64> = serde_json::from_value(e["gradient"].clone()).unwrap();
    assert_eq!(grad.len(), want.len());
    for (i, (a, b)) in grad.iter().zip(&want).enumerate() {
        close(*a, *b, &format!("gradient {i}"));
    }
}

#[test]
fn gmm_objectives_of_the_shipped_1k_instances() {
    let mut checked = 0;
    for (file, fields) in objectives()
        .iter()
        .filter(|(f, _)| f.starts_with("gmm/1k") && data(f).is_file())
    {
        let input = gmm::read(&data(file)).unwrap();
        assert_eq!(
            (input.d, input.k, input.n),
            (fields[0] as usize, fields[1] as usize, fields[2] as usize)
        );
        let value = chainrule::autograd::no_grad(|| {
            gmm::objective(&input, &input.alphas, &input.means, &input.icf)
        })
        .item();
        close(value, fields[3], file);
        checked += 1;
    }
    assert_eq!(checked, 6 + 2); // d=2 K 5…200, d=10 K 5 and 25 (see data/README.md)
}

#[test]
fn gmm_gradients_equal_the_reference_gradients() {
    for (file, golden) in [
        ("gmm/1k/gmm_d2_K5.txt", "golden/gmm_1k_d2_K5.grad.txt"),
        ("gmm/1k/gmm_d10_K5.txt", "golden/gmm_1k_d10_K5.grad.txt"),
        ("gmm/1k/gmm_d10_K25.txt", "golden/gmm_1k_d10_K25.grad.txt"),
    ] {
        let text = std::fs::read_to_string(data(golden)).unwrap();
        let mut lines = text.lines();
        let value: f64 = lines.next().unwrap().trim().parse().unwrap();
        let want: Vec<f64> = lines
            .next()
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let input = gmm::read(&data(file)).unwrap();
        let (v, grad) = gmm::objective_and_gradient(&input).unwrap();
        close(v, value, file);
        assert_eq!(grad.len(), want.len(), "{file}");
        for (i, (a, b)) in grad.iter().zip(&want).enumerate() {
            close(*a, *b, &format!("{file} gradient {i}"));
        }
    }
}

#[test]
fn ba_unit_test_instance_residuals_and_sparse_jacobian() {
    let e = &expected()["ba_test"];
    let input = ba::read(&data("ba/test.txt")).unwrap();
    let (reproj, werr) = ba::residuals(&input);
    let pair: Vec<f64> = serde_json::from_value(e["reproj_err_pair"].clone()).unwrap();
    for row in reproj.to_vec::<f64>().chunks_exact(2) {
        close(row[0], pair[0], "reprojection x");
        close(row[1], pair[1], "reprojection y");
    }
    for w in werr.to_vec::<f64>() {
        close(w, e["w_err_value"].as_f64().unwrap(), "weight error");
    }
    let j = ba::jacobian(&input).unwrap();
    let je = &e["jacobian"];
    assert_eq!(
        (j.rows, j.cols),
        (
            je["nrows"].as_u64().unwrap() as usize,
            je["ncols"].as_u64().unwrap() as usize
        )
    );
    assert_eq!(j.row_ptr.len(), je["rows_len"].as_u64().unwrap() as usize);
    let want: Vec<f64> = serde_json::from_value(je["vals"].clone()).unwrap();
    assert_eq!(j.values.len(), want.len());
    for (i, (a, b)) in j.values.iter().zip(&want).enumerate() {
        close(*a, *b, &format!("jacobian value {i}"));
    }
    // 15 nonzeros per reprojection row, 1 per weight row
    for r in 0..j.rows {
        assert_eq!(j.row_ptr[r + 1] - j.row_ptr[r], if r < 20 { 15 } else { 1 });
    }
    // Blocks in another layout (the sweeps first) are refused, not misread.
    let blocks = ba::reprojection_blocks(&ba::gathered(&input), &input.features).unwrap();
    let sweeps_first = blocks.permute(&[1, 0, 2]).contiguous();
    let err = ba::sparse_jacobian(&input, &sweeps_first)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("sparse_jacobian"), "{err}");
}

#[test]
fn ba_residuals_of_the_instances() {
    // Every file up to 400k observations (the larger ones replicate the same
    // observation millions of times; the formula is the same).
    for (file, f) in objectives().iter().filter(|(f, _)| f.starts_with("ba/")) {
        if f[2] > 400_000.0 {
            continue;
        }
        let input = ba::read(&data(file)).unwrap();
        let (reproj, werr) = ba::residuals(&input);
        assert_eq!(reproj.shape(), &[f[2] as usize, 2]);
        let v = reproj.to_vec::<f64>();
        close(v[0], f[3], file);
        close(v[1], f[4], file);
        close(v[v.len() - 1], f[4], file);
        close(werr.to_vec::<f64>()[0], f[5], file);
    }
}

#[test]
fn lstm_objectives_and_the_reference_gradient() {
    for (file, f) in objectives().iter().filter(|(f, _)| f.starts_with("lstm/")) {
        let input = lstm::read(&data(file)).unwrap();
        let value =
            chainrule::autograd::no_grad(|| lstm::objective(&input, &input.main, &input.extra))
                .item();
        close(value, f[3], file);
    }
    let e = &expected()["lstm_l2_c1024"];
    let input = lstm::read(&data("lstm/lstm_l2_c1024.txt")).unwrap();
    let (_, grad) = lstm::objective_and_gradient(&input).unwrap();
    let want: Vec<f64> = serde_json::from_value(e["gradient"].clone()).unwrap();
    assert_eq!(grad.len(), want.len());
    for (i, (a, b)) in grad.iter().zip(&want).enumerate() {
        close(*a, *b, &format!("lstm gradient {i}"));
    }
    // The scan form, its gradient compiled as the GradBench tool runs it.
    let (nm, ne) = (input.main.numel(), input.extra.numel());
    let compiled = chainrule::func::jit(|p: &[chainrule::Tensor]| {
        let g = chainrule::func::grad_n(|q| lstm::objective_scan(&input, &q[0], &q[1]), p)?;
        chainrule::Tensor::try_concat(&[&g[0].reshape(&[nm]), &g[1].reshape(&[ne])], 0)
    });
    let grad = compiled
        .call(&[input.main.clone(), input.extra.clone()])
        .unwrap()
        .to_vec::<f64>();
    for (i, (a, b)) in grad.iter().zip(&want).enumerate() {
        close(*a, *b, &format!("lstm gradient {i} (scan, compiled)"));
    }
    let value = lstm::objective_scan(&input, &input.main, &input.extra).unwrap();
    close(
        value.item(),
        e["objective"].as_f64().unwrap(),
        "lstm objective (scan)",
    );
}

#[test]
fn bad_files_name_the_file_and_what_was_expected() {
    let dir = std::env::temp_dir().join(format!("chainrule-adbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truncated = dir.join("gmm_truncated.txt");
    std::fs::write(&truncated, "2 3 1\n0.1 0.2\n").unwrap();
    let e = gmm::read(&truncated).err().unwrap().to_string();
    assert!(
        e.contains("gmm_truncated.txt") && e.contains("truncated") && e.contains("weights"),
        "{e}"
    );
    let junk = dir.join("ba_junk.txt");
    std::fs::write(&junk, "2 10 x").unwrap();
    let e = ba::read(&junk).err().unwrap().to_string();
    assert!(e.contains("ba_junk.txt") && e.contains("`x`"), "{e}");
    let e = lstm::read(&dir.join("missing.txt"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("missing.txt") && e.contains("cannot read"),
        "{e}"
    );
    let short = dir.join("lstm_short.txt");
    std::fs::write(&short, "2 1024 14\n1 2 3").unwrap();
    let e = lstm::read(&short).err().unwrap().to_string();
    assert!(e.contains("main parameters"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
