//! Compiled graphs: what the planner fuses, what it leaves to the
//! interpreter, and that native runs equal interpreted ones and keep what
//! earlier runs returned.

use chainrule::graph::{CompileOptions, Executable, Graph};
use chainrule::{func, DType, Tensor};

fn t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, -1.0, 1.0, seed, DType::F64)
}

fn compiled(feeds: &[(&str, &Tensor)], f: impl FnOnce(&[Tensor]) -> Vec<Tensor>) -> Executable {
    Graph::trace(feeds, |xs| Ok(f(xs))).unwrap().compile()
}

fn assert_native_equals_interpreted(exe: &Executable, feeds: &[(&str, &Tensor)]) {
    assert_close_to_interpreted(exe, feeds, 1e-12);
}

#[test]
fn an_elementwise_chain_and_its_sum_are_one_loop() {
    let (x, w, b) = (t(&[64, 32], 1), t(&[32], 2), t(&[], 3));
    let feeds = [("x", &x), ("w", &w), ("b", &b)];
    let exe = compiled(&feeds, |t| {
        vec![(&t[0] * &t[1] + &t[2]).tanh().square().sum()]
    });
    let r = exe.report().expect("compiled");
    assert_eq!((r.kernels, r.interpreted_nodes), (1, 0), "{r:?}");
    assert_eq!(r.fused_nodes, 5, "{r:?}");
    assert_native_equals_interpreted(&exe, &feeds);
}

#[test]
fn matmul_runs_through_the_gemm_and_its_epilogue_is_fused() {
    let (x, w, b) = (t(&[16, 8], 1), t(&[8, 4], 2), t(&[4], 3));
    let feeds = [("x", &x), ("w", &w), ("b", &b)];
    let exe = compiled(&feeds, |t| vec![(t[0].matmul(&t[1]) + &t[2]).relu().sum()]);
    let r = exe.report().expect("compiled");
    assert_eq!((r.kernels, r.interpreted_nodes), (1, 1), "{r:?}");
    assert_native_equals_interpreted(&exe, &feeds);
}

#[test]
fn row_reductions_feed_a_second_loop() {
    // log-softmax: a max and a sum over rows, each ending a loop
    let x = t(&[5, 7], 4);
    let feeds = [("x", &x)];
    let exe = compiled(&feeds, |t| {
        let m = t[0].max_axes(&[1], true);
        let z = &t[0] - &m;
        vec![&z - &z.exp().sum_axes(&[1], true).log()]
    });
    assert_native_equals_interpreted(&exe, &feeds);
    // and over the other axis (folded into memory across the outer loop)
    let exe = compiled(&feeds, |t| {
        vec![t[0].exp().sum_axes(&[0], false), t[0].min_axes(&[0], true)]
    });
    assert_native_equals_interpreted(&exe, &feeds);
}

#[test]
fn views_are_read_in_place() {
    let x = t(&[6, 4], 5);
    let feeds = [("x", &x)];
    let exe = compiled(&feeds, |t| {
        let head = t[0].narrow(0, 0, 5).transpose(0, 1);
        let tail = t[0].narrow(0, 1, 5).transpose(0, 1);
        vec![(tail - head.square()).exp() * 2.0]
    });
    let r = exe.report().expect("compiled");
    assert_eq!((r.kernels, r.interpreted_nodes), (1, 0), "{r:?}");
    assert!(r.views >= 2, "{r:?}");
    assert_native_equals_interpreted(&exe, &feeds);
}

#[test]
fn unfused_code_is_a_kernel_per_node_and_agrees() {
    let (x, w) = (t(&[10], 1), t(&[10], 2));
    let feeds = [("x", &x), ("w", &w)];
    let g = Graph::trace(&feeds, |t| Ok(vec![(t[0].dot(&t[1]) - 1.0).square()])).unwrap();
    let fused = g.clone().compile();
    let unfused = g.compile_with(CompileOptions {
        native: true,
        fuse: false,
    });
    assert!(unfused.report().unwrap().kernels > fused.report().unwrap().kernels);
    let (a, b) = (fused.run(&feeds).unwrap(), unfused.run(&feeds).unwrap());
    assert!((a[0].item() - b[0].item()).abs() < 1e-12);
    assert_native_equals_interpreted(&unfused, &feeds);
}

#[test]
fn outputs_of_a_run_survive_later_runs() {
    let x = t(&[100], 1);
    let feeds = [("x", &x)];
    let exe = compiled(&feeds, |t| vec![t[0].sin() * 3.0, t[0].exp().sum()]);
    let first = exe.run(&feeds).unwrap();
    let kept = first[0].to_vec::<f64>();
    let y = t(&[100], 2);
    let second = exe.run(&[("x", &y)]).unwrap();
    assert_eq!(first[0].to_vec::<f64>(), kept);
    assert_ne!(second[0].to_vec::<f64>(), kept);
    assert_native_equals_interpreted(&exe, &[("x", &y)]);
}

#[test]
fn buffers_with_disjoint_lifetimes_share_arena_slots() {
    // ten layers, each a GEMM (interpreted) then a fused tanh stored for the next
    let x = t(&[8, 16], 1);
    let ws: Vec<Tensor> = (0..10).map(|k| t(&[16, 16], 10 + k)).collect();
    let mut feeds = vec![("x", &x)];
    let names: Vec<String> = (0..10).map(|k| format!("w{k}")).collect();
    feeds.extend(names.iter().map(String::as_str).zip(&ws));
    let exe = compiled(&feeds, |t| {
        let mut h = t[0].clone();
        for w in &t[1..] {
            h = h.matmul(w).tanh();
        }
        vec![h.sum()]
    });
    let r = exe.report().expect("compiled");
    assert_eq!(r.interpreted_nodes, 10, "{r:?}");
    assert!(r.arena_slots <= 3, "{r:?}");
    assert_native_equals_interpreted(&exe, &feeds);
}

#[test]
fn f32_graphs_compute_in_f32() {
    let x = Tensor::from_vec(vec![0.1f32, 0.2, 0.3], &[3]);
    let exe = compiled(&[("x", &x)], |t| vec![(t[0].exp() * 0.5).sum()]);
    let out = exe.run(&[("x", &x)]).unwrap();
    assert_eq!(out[0].dtype(), DType::F32);
    let want: f32 = [0.1f32, 0.2, 0.3].iter().map(|v| v.exp() * 0.5).sum();
    assert_eq!(out[0].to_vec::<f32>()[0], want);
}

#[test]
fn vector_loops_and_their_remainders_agree_in_both_dtypes() {
    // 37 columns: vectors of 4 (f32) or 2 (f64) lanes, then a remainder;
    // broadcasts along each axis, masks, calls per lane, and reductions
    // along the vector axis (lanes folded) and across it (in memory).
    for dtype in [DType::F32, DType::F64] {
        let x = Tensor::rand_uniform(&[3, 37], -2.0, 2.0, 7, dtype);
        let b = Tensor::rand_uniform(&[37], -1.0, 1.0, 8, dtype);
        let r = Tensor::rand_uniform(&[3, 1], -1.0, 1.0, 9, dtype);
        let feeds = [("x", &x), ("b", &b), ("r", &r)];
        // Optimized: the comparisons become masks the kernel keeps in registers.
        let traced = Graph::trace(&feeds, |t| {
            let h = (&t[0] * &t[2] + &t[1]).relu().clamp(-0.5, 1.5);
            let m = h.maximum(&t[0]) - t[0].gt(&t[1]).to_dtype(dtype) * t[0].sin();
            let w = Tensor::where_(&t[0].lt(&t[2]), &m, &m.exp());
            Ok(vec![
                w.clone(),
                w.sum_axes(&[1], false),
                w.sum_axes(&[0], true),
                w.max_axes(&[1], false),
                w.min(),
                w.abs().sqrt().sign(),
            ])
        });
        let exe = traced.unwrap().optimize().compile();
        assert_eq!(exe.report().expect("compiled").interpreted_nodes, 0);
        let native = exe.run(&feeds).unwrap();
        let interpreted = exe.run_interpreted(&feeds).unwrap();
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        for (a, b) in native.iter().zip(&interpreted) {
            assert_eq!((a.shape(), a.dtype()), (b.shape(), b.dtype()));
            for (x, y) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()) {
                assert!(
                    (x - y).abs() <= tol * (1.0 + y.abs()),
                    "{dtype:?}: {x} vs {y}"
                );
            }
        }
    }
}

/// Reductions along the vector axis fold each interleaved block into its
/// own accumulators: every length (no whole group, groups and a remainder
/// of vectors and of lanes), a reduction per row and over everything
/// (accumulators kept across rows), in kernels of 4 blocks and in ones
/// that call a transcendental (16); a NaN in any block wins the max.
#[test]
fn reductions_over_interleaved_blocks_agree_with_the_interpreter() {
    for dtype in [DType::F32, DType::F64] {
        for n in [3, 9, 16, 37, 64, 129, 1000] {
            let x = Tensor::rand_uniform(&[3, n], -2.0, 2.0, n as u64, dtype);
            let feeds = [("x", &x)];
            let exe = compiled(&feeds, |t| {
                let (x, e) = (&t[0], t[0].exp());
                vec![
                    x.sum(),
                    x.max(),
                    x.min_axes(&[1], false),
                    e.sum_axes(&[1], false),
                    e.max(),
                    (-&e).min(),
                ]
            });
            let native = exe.run(&feeds).unwrap();
            let interpreted = exe.run_interpreted(&feeds).unwrap();
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            for (k, (a, b)) in native.iter().zip(&interpreted).enumerate() {
                let (a, b) = (a.to_vec::<f64>(), b.to_vec::<f64>());
                if k % 3 == 0 {
                    for (x, y) in a.iter().zip(&b) {
                        assert!(
                            (x - y).abs() <= tol * y.abs(),
                            "{dtype:?} n={n}: {x} vs {y}"
                        );
                    }
                } else {
                    assert_eq!(a, b, "{dtype:?} n={n}: output {k}");
                }
            }
        }
    }
    let mut values: Vec<f64> = (0..200).map(|i| (i as f64 * 0.37).sin()).collect();
    for at in [0, 5, 17, 60, 199] {
        values[at] = f64::NAN;
        let x = Tensor::from_vec(values.clone(), &[200]);
        let exe = compiled(&[("x", &x)], |t| vec![t[0].max(), t[0].exp().max()]);
        for y in exe.run(&[("x", &x)]).unwrap() {
            assert!(y.item().is_nan(), "a NaN at {at}");
        }
        values[at] = 0.5;
    }
}

mod jit {
    use super::t;
    use chainrule::{func, Tensor};

    fn f(x: &Tensor) -> Tensor {
        (x.sin() * x + x.square().exp() * 0.1).sum()
    }

    fn close(a: &Tensor, b: &Tensor) {
        assert_eq!(a.shape(), b.shape());
        for (x, y) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()) {
            assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn compiles_once_per_shape_and_dtype() {
        let g = func::jit(|x: &[Tensor]| f(&x[0]));
        let (a, b) = (t(&[3], 1), t(&[3], 2));
        close(&g.call(std::slice::from_ref(&a)).unwrap(), &f(&a));
        close(&g.call(std::slice::from_ref(&b)).unwrap(), &f(&b));
        assert_eq!(g.specializations(), 1);
        let c = t(&[5], 3);
        close(&g.call(std::slice::from_ref(&c)).unwrap(), &f(&c));
        let d = c.to_dtype(chainrule::DType::F32);
        g.call(&[d]).unwrap();
        assert_eq!(g.specializations(), 3);
    }

    #[test]
    fn jit_of_a_derivative_compiles_the_derivative() {
        let x = t(&[4], 5);
        let dg = func::jit(|x: &[Tensor]| func::grad(f, &x[0]));
        close(
            &dg.call(std::slice::from_ref(&x)).unwrap(),
            &func::grad(f, &x).unwrap(),
        );
        let h = func::jit(|x: &[Tensor]| func::hessian(f, &x[0]));
        close(
            &h.call(std::slice::from_ref(&x)).unwrap(),
            &func::hessian(f, &x).unwrap(),
        );
    }

    #[test]
    fn a_jitted_function_is_differentiable() {
        let g = func::jit(|x: &[Tensor]| f(&x[0]));
        let x = t(&[4], 6);
        let through = func::grad(|x| g.call(std::slice::from_ref(x)), &x).unwrap();
        close(&through, &func::grad(f, &x).unwrap());
        let (_, tangent) =
            func::jvp(|x| g.call(std::slice::from_ref(x)), &x, &x.ones_like()).unwrap();
        let (_, want) = func::jvp(f, &x, &x.ones_like()).unwrap();
        close(&tangent, &want);
    }

    #[test]
    fn shape_errors_name_the_op() {
        let g = func::jit(|x: &[Tensor]| x[0].try_add(&x[1]));
        let e = g.call(&[t(&[3], 1), t(&[4], 2)]).unwrap_err().to_string();
        assert!(
            e.contains("add") && e.contains("[3]") && e.contains("[4]"),
            "{e}"
        );
    }
}

#[test]
fn a_long_chain_is_split_into_kernels_and_loads_each_input_once() {
    // 6,000 adds of the same input: a handful of kernels, each loading `x` once
    let x = t(&[], 1);
    let exe = compiled(&[("x", &x)], |t| {
        let mut s = t[0].clone();
        for _ in 0..6000 {
            s = &s + &t[0];
        }
        vec![s]
    });
    let r = exe.report().expect("compiled");
    assert!(
        r.kernels >= 6000 / 512 && r.kernels <= 6000 / 512 + 2,
        "{r:?}"
    );
    assert_native_equals_interpreted(&exe, &[("x", &x)]);
}

/// Native and interpreted values agree to `tol`, relative to the largest
/// value of each output (the one-pass products sum in another order).
fn assert_close(exe: &Executable, feeds: &[(&str, &Tensor)], tol: f64) {
    let native = exe.run(feeds).unwrap();
    let interpreted = exe.run_interpreted(feeds).unwrap();
    for (a, b) in native.iter().zip(&interpreted) {
        assert_eq!(a.shape(), b.shape());
        let (a, b) = (a.to_vec::<f64>(), b.to_vec::<f64>());
        let scale = b.iter().fold(1.0f64, |s, v| s.max(v.abs()));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= tol * scale, "{x} vs {y}");
        }
    }
}

#[test]
fn a_least_squares_gradient_reads_its_large_matrix_once() {
    // 2.4 MB of X: `Xᵀ (2 (X w − y))` is one pass over it.
    let (x, w, y) = (t(&[1024, 300], 1), t(&[300], 2), t(&[1024], 3));
    let feeds = [("X", &x), ("w", &w), ("y", &y)];
    let g = Graph::trace(&feeds, |t| {
        Ok(vec![(t[0].matmul(&t[1]) - &t[2]).square().sum()])
    })
    .unwrap()
    .gradients(0, &["w"])
    .unwrap()
    .optimize();
    let exe = g.clone().compile();
    assert_eq!(exe.report().expect("compiled").streams, 1);
    assert_close(&exe, &feeds, 1e-12);
    let unfused = g.compile_with(CompileOptions {
        native: true,
        fuse: false,
    });
    assert_eq!(unfused.report().expect("compiled").streams, 0);
}

#[test]
fn a_logistic_residual_streams_in_both_dtypes() {
    // `(σ(X w) − y) X` in f32 and f64, with a value read from outside the chain.
    for dtype in [DType::F32, DType::F64] {
        let (x, w, y) = (
            Tensor::rand_uniform(&[1024, 512], -1.0, 1.0, 1, dtype),
            Tensor::rand_uniform(&[512], -0.1, 0.1, 2, dtype),
            Tensor::rand_uniform(&[1024], 0.0, 1.0, 3, dtype),
        );
        let feeds = [("X", &x), ("w", &w), ("y", &y)];
        let exe = compiled(&feeds, |t| {
            let r = t[0].matmul(&t[1]).sigmoid() - &t[2];
            vec![r.matmul(&t[0]), r.square().sum()]
        });
        assert_eq!(exe.report().expect("compiled").streams, 1, "{dtype:?}");
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        assert_close(&exe, &feeds, tol);
    }
}

#[test]
fn a_residual_that_needs_all_of_x_w_first_is_not_streamed() {
    // `X w − mean(X w)` needs every row of `X w` before any row of `r`.
    let (x, w) = (t(&[1024, 300], 1), t(&[300], 2));
    let feeds = [("X", &x), ("w", &w)];
    let exe = compiled(&feeds, |t| {
        let p = t[0].matmul(&t[1]);
        let r = &p - &p.mean();
        vec![r.matmul(&t[0])]
    });
    assert_eq!(exe.report().expect("compiled").streams, 0);
    assert_close(&exe, &feeds, 1e-12);
}

#[test]
fn kernels_that_differ_only_in_their_buffers_share_one_function() {
    // 24 sums of the same loop over different inputs (as the row-by-row
    // pullbacks of a Jacobian are): one function, 24 kernel steps.
    let xs: Vec<Tensor> = (0..25).map(|i| t(&[16], i)).collect();
    let names: Vec<String> = (0..25).map(|i| format!("x{i}")).collect();
    let feeds: Vec<(&str, &Tensor)> = names.iter().map(|n| n.as_str()).zip(&xs).collect();
    let exe = compiled(&feeds, |t| {
        (1..25).map(|i| (&t[0] * &t[i]).tanh().sum()).collect()
    });
    let r = exe.report().expect("compiled");
    assert_eq!((r.kernels, r.kernel_functions), (24, 1), "{r:?}");
    assert_native_equals_interpreted(&exe, &feeds);
}

#[test]
fn a_shift_by_concatenation_is_read_in_place() {
    // The right-hand side of `ode`: x ⊙ (1, y₀ … y_{n−2}), twice, as RK4 has it.
    let (x, y) = (t(&[37], 1), t(&[37], 2));
    let feeds = [("x", &x), ("y", &y)];
    let exe = compiled(&feeds, |t| {
        let one = Tensor::ones(&[1], DType::F64);
        let f = |y: &Tensor| &t[0] * &Tensor::concat(&[&one, &y.narrow(0, 0, 36)], 0);
        let k1 = f(&t[1]);
        vec![f(&(&t[1] + &k1 * 0.5)) + k1]
    });
    let r = exe.report().expect("compiled");
    assert_eq!((r.fused_pieces, r.interpreted_nodes), (2, 0), "{r:?}");
    assert_native_equals_interpreted(&exe, &feeds);
}

#[test]
fn an_index_select_that_only_kernels_read_is_gathered_where_it_lies() {
    // Along the vector loop's axis (lane by lane) and along the first, with
    // repeats; by a constant index and a fed one; broadcast against another
    // operand and from a permuted view; long enough for interleaved blocks.
    for dtype in [DType::F64, DType::F32] {
        let x = Tensor::rand_uniform(&[3, 4, 301], -1.0, 1.0, 1, dtype);
        let u = Tensor::rand_uniform(&[257], -1.0, 1.0, 2, dtype);
        let picks: Vec<i64> = (0..257).map(|i| (i * 37 + i / 5) % 301).collect();
        let fed = Tensor::from_vec(picks.clone(), &[257]);
        let feeds = [("x", &x), ("u", &u), ("i", &fed)];
        let exe = compiled(&feeds, |t| {
            let constant: Vec<usize> = picks.iter().rev().map(|&i| i as usize).collect();
            let a = t[0].index_select(2, &constant); // (3, 4, 257)
            let b = t[0].index_select(2, &t[2]);
            let c = t[0].permute(&[2, 1, 0]).index_select(0, &t[2]); // (257, 4, 3)
            vec![
                (&a * &t[1] + b.exp()).sum_axes(&[1], false),
                (c * 2.0).sin(),
            ]
        });
        let r = exe.report().expect("compiled");
        assert_eq!((r.fused_gathers, r.interpreted_nodes), (3, 0), "{r:?}");
        let tol = if dtype == DType::F32 { 1e-6 } else { 1e-12 };
        assert_close_to_interpreted(&exe, &feeds, tol);
    }
}

/// A constant that lies broadcast (stride 0, from an offset into its
/// buffer, as a tangent seed expanded over a batch does) is read where it
/// lies: by kernels through its strides, by a product as it is.
#[test]
fn a_broadcast_constant_is_read_where_it_lies() {
    for dtype in [DType::F64, DType::F32] {
        let x = Tensor::rand_uniform(&[3, 257], -1.0, 1.0, 1, dtype);
        let base = Tensor::rand_uniform(&[5], -1.0, 1.0, 2, dtype);
        let column = base.narrow(0, 1, 3).unsqueeze(1).broadcast_to(&[3, 257]);
        let row = base.narrow(0, 2, 1).broadcast_to(&[257]);
        let feeds = [("x", &x)];
        let exe = compiled(&feeds, |t| {
            vec![
                (&t[0] * &column).exp() + column.sin() * &row,
                column.matmul(&t[0].t()),
            ]
        });
        let tol = if dtype == DType::F32 { 1e-6 } else { 1e-12 };
        assert_close_to_interpreted(&exe, &feeds, tol);
        let eager = (&x * &column).exp() + column.sin() * &row;
        let native = exe.run(&feeds).unwrap();
        let (a, b) = (native[0].to_vec::<f64>(), eager.to_vec::<f64>());
        assert!(a
            .iter()
            .zip(&b)
            .all(|(a, b)| (a - b).abs() <= tol * (1.0 + b.abs())));
    }
}

#[test]
fn a_gathered_index_out_of_range_is_an_error_and_other_readers_get_it_built() {
    let x = t(&[5, 6], 1);
    let good = Tensor::from_vec(vec![5i64, 0, 2], &[3]);
    let feeds = [("x", &x), ("i", &good)];
    let exe = compiled(&feeds, |t| vec![t[0].index_select(1, &t[1]).exp()]);
    assert_eq!(exe.report().expect("compiled").fused_gathers, 1);
    assert_native_equals_interpreted(&exe, &feeds);
    let bad = Tensor::from_vec(vec![0i64, 6, 2], &[3]);
    let e = exe.run(&[("x", &x), ("i", &bad)]).unwrap_err().to_string();
    assert!(e.contains("index_select") && e.contains("index 6"), "{e}");
    let negative = Tensor::from_vec(vec![0i64, -1, 2], &[3]);
    assert!(exe.run(&[("x", &x), ("i", &negative)]).is_err());
    // Read by a product too: built once, by the interpreter, for both.
    let exe = compiled(&feeds, |t| {
        let picked = t[0].index_select(1, &t[1]);
        vec![picked.t().matmul(&picked) + picked.sum()]
    });
    let r = exe.report().expect("compiled");
    assert_eq!(r.fused_gathers, 0, "{r:?}");
    assert_native_equals_interpreted(&exe, &feeds);
}

#[test]
fn a_gather_built_for_a_later_reader_is_still_read_in_place_by_earlier_loops() {
    let (x, w) = (t(&[4, 6], 1), t(&[3, 3], 2));
    let i = Tensor::from_vec(vec![5i64, 0, 2], &[3]);
    let feeds = [("x", &x), ("w", &w), ("i", &i)];
    let exe = compiled(&feeds, |t| {
        let picked = t[0].index_select(1, &t[2]); // (4, 3)
        let early = (&picked * 2.0).exp(); // a loop that reads it in place…
        let closed = early.matmul(&t[1]); // …and runs before this product
        let late = picked.matmul(&t[1]); // which has it built, after that loop
        vec![closed + late]
    });
    assert_native_equals_interpreted(&exe, &feeds);
    // Read across a larger loop, a gather is built once, not gathered on
    // each pass of the loop.
    let exe = compiled(&feeds, |t| {
        let picked = t[0].index_select(1, &t[2]);
        vec![(&picked + &Tensor::ones(&[2, 4, 3], DType::F64)).exp()]
    });
    let r = exe.report().expect("compiled");
    assert_eq!((r.fused_gathers, r.interpreted_nodes), (0, 1), "{r:?}");
    assert_native_equals_interpreted(&exe, &feeds);
}

#[test]
fn a_gather_and_its_tangents_fuse_under_jit() {
    // kmeans' assigned cost: its gradient and the gradient's JVP (the
    // Hessian's diagonal) gather the centroids by each point's assignment.
    let (points, centroids) = (t(&[40, 3], 1), t(&[5, 3], 2));
    let nearest = Tensor::from_vec((0..40).map(|i| (i * 7 % 5) as i64).collect(), &[40]);
    let cost = |c: &Tensor, x: &[Tensor]| (c.index_select(0, &x[2]) - &x[1]).square().sum();
    let direction = |x: &[Tensor]| {
        let gradient = |c: &Tensor| func::grad(|c: &Tensor| cost(c, x), c);
        let (j, h) = func::jvp(gradient, &x[0], &x[0].ones_like()).unwrap();
        j / h
    };
    let xs = [centroids, points, nearest];
    let compiled = func::jit(direction).call(&xs).unwrap();
    let eager = direction(&xs);
    for (a, b) in compiled.to_vec::<f64>().iter().zip(eager.to_vec::<f64>()) {
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

#[test]
fn a_padding_splits_the_loop_in_three_and_a_fold_across_it_runs_apart() {
    let (a, b) = (t(&[3, 4], 1), t(&[3, 9], 2));
    let feeds = [("a", &a), ("b", &b)];
    let exe = compiled(&feeds, |t| {
        let padded = t[0].try_pad(1, 2, 9).unwrap();
        vec![(&padded * &t[1]).exp().sum_axes(&[1], false)]
    });
    let r = exe.report().expect("compiled");
    // The sum folds across the split: it is a loop of its own, after the
    // elementwise loop and its three parts (zeros, `a`, zeros).
    assert_eq!(
        (r.fused_pieces, r.interpreted_nodes, r.kernels),
        (1, 0, 2),
        "{r:?}"
    );
    assert_native_equals_interpreted(&exe, &feeds);
    let exe = compiled(&feeds, |t| {
        let padded = t[0].try_pad(1, 2, 9).unwrap();
        vec![(&padded * &t[1]).exp().sum_axes(&[0], false)]
    });
    let r = exe.report().expect("compiled");
    // A fold along the other axis stays in the loop of the three parts.
    assert_eq!(
        (r.fused_pieces, r.interpreted_nodes, r.kernels),
        (1, 0, 1),
        "{r:?}"
    );
    assert_native_equals_interpreted(&exe, &feeds);
}

#[test]
fn pieces_read_elsewhere_than_by_a_kernel_of_their_shape_are_built() {
    let (a, b, w) = (t(&[2, 3], 1), t(&[2, 5], 2), t(&[8, 4], 3));
    let feeds = [("a", &a), ("b", &b), ("w", &w)];
    let exe = compiled(&feeds, |t| {
        let c = Tensor::concat(&[&t[0], &t[1]], 1); // (2, 8)
        let d = Tensor::concat(&[&c, &t[0].try_pad(1, 0, 8).unwrap()], 0); // (4, 8)
                                                                           // `c` in a kernel, in a concatenation and in a product; `d` broadcast.
        vec![
            c.sin() + c.matmul(&t[2]).sum(),
            (&d.unsqueeze(0) + &c.unsqueeze(1)).sum(),
        ]
    });
    assert_native_equals_interpreted(&exe, &feeds);
}

/// Pieces that kernels store are written straight into their part of the
/// concatenation, never copied: also where a piece is an output or read
/// again, and a run's result survives the next run. Pieces that are not
/// one stretch of it (columns of a matrix) are joined by the interpreter.
#[test]
fn stored_pieces_are_written_into_their_concatenation() {
    let x = t(&[5, 40], 1);
    let feeds = [("x", &x)];
    let exe = compiled(&feeds, |t| {
        let rows: Vec<Tensor> = (0..5)
            .map(|k| t[0].narrow(0, k, 1).sin() * (k as f64 + 1.0))
            .collect();
        let joined = Tensor::concat(&rows.iter().collect::<Vec<_>>(), 0);
        vec![joined, rows[2].clone(), rows[3].exp().sum()]
    });
    let r = exe.report().expect("compiled");
    assert_eq!((r.concats_in_place, r.interpreted_nodes), (1, 0), "{r:?}");
    let first = exe.run(&feeds).unwrap();
    let kept = first[0].to_vec::<f64>();
    assert_native_equals_interpreted(&exe, &feeds);
    assert_native_equals_interpreted(&exe, &[("x", &t(&[5, 40], 2))]);
    assert_eq!(first[0].to_vec::<f64>(), kept);

    let exe = compiled(&feeds, |t| {
        let columns: Vec<Tensor> = (0..4).map(|k| t[0].narrow(1, 10 * k, 10).cos()).collect();
        vec![Tensor::concat(&columns.iter().collect::<Vec<_>>(), 1)]
    });
    let r = exe.report().expect("compiled");
    assert_eq!((r.concats_in_place, r.interpreted_nodes), (0, 1), "{r:?}");
    assert_native_equals_interpreted(&exe, &feeds);
}

/// A gradient through many narrows of one input (a polynomial by Horner's
/// rule, as `llsq`) joins its per-coefficient sums in place, and equals the
/// eager gradient.
#[test]
fn a_gradient_through_many_narrows_writes_its_sums_in_place() {
    let (x, p) = (t(&[24], 1), t(&[37], 2));
    let horner = |x: &Tensor, p: &Tensor| {
        let m = x.shape()[0];
        let mut y = x.narrow(0, m - 1, 1);
        for j in (0..m - 1).rev() {
            y = y * p + x.narrow(0, j, 1);
        }
        (p.sin() - y).square().sum()
    };
    let feeds = [("x", &x), ("p", &p)];
    // Optimized: the pass that merges the narrows' disjoint paddings into
    // one concatenation of the sums.
    let exe = Graph::trace(&feeds, |t| {
        func::grad(|x| horner(x, &t[1]), &t[0]).map(|g| vec![g])
    })
    .unwrap()
    .optimize()
    .compile();
    let r = exe.report().expect("compiled");
    assert_eq!((r.concats_in_place, r.interpreted_nodes), (1, 0), "{r:?}");
    let eager = func::grad(|x| horner(x, &p), &x).unwrap().to_vec::<f64>();
    let native = exe.run(&feeds).unwrap()[0].to_vec::<f64>();
    for (a, b) in native.iter().zip(&eager) {
        assert!((a - b).abs() <= 1e-10 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

#[test]
fn a_compiled_gradient_through_shifts_equals_the_eager_one() {
    let x = t(&[50], 4);
    let solve = |x: &Tensor| {
        let one = Tensor::ones(&[1], DType::F64);
        let f = |y: &Tensor| x * &Tensor::concat(&[&one, &y.narrow(0, 0, 49)], 0);
        let mut y = x.zeros_like();
        for _ in 0..3 {
            let k1 = f(&y);
            let k2 = f(&(&y + &k1 * 0.1));
            y = &y + &((k1 + k2) * 0.1);
        }
        y.narrow(0, 40, 10).sum()
    };
    let eager = func::grad(solve, &x).unwrap();
    let jitted = chainrule::func::jit(|x: &[Tensor]| chainrule::func::grad(solve, &x[0]));
    let compiled = jitted.call(std::slice::from_ref(&x)).unwrap();
    for (a, b) in compiled.to_vec::<f64>().iter().zip(eager.to_vec::<f64>()) {
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

#[test]
fn pieces_along_two_axes_in_one_loop_split_it_along_one() {
    let (a, b, c) = (t(&[1, 4], 1), t(&[2, 4], 2), t(&[3, 2], 3));
    let feeds = [("a", &a), ("b", &b), ("c", &c)];
    let exe = compiled(&feeds, |t| {
        let rows = Tensor::concat(&[&t[0], &t[1]], 0); // (3, 4), pieces along 0
        let columns = t[2].try_pad(1, 1, 4).unwrap(); // (3, 4), pieces along 1
        vec![(&rows * &columns).sin()]
    });
    let r = exe.report().expect("compiled");
    // The loop splits along the first one's axis; the padding is built.
    assert_eq!(
        (r.fused_pieces, r.interpreted_nodes, r.kernels),
        (1, 1, 1),
        "{r:?}"
    );
    assert_native_equals_interpreted(&exe, &feeds);
}

/// Native and interpreted runs agree to `tol`, in any float dtype.
/// A body that is one long chain (Horner's rule, 40 steps) runs four
/// vector blocks side by side; every length exercises the interleaved
/// loop, the plain vector loop after it and the scalar rest, with values
/// stored, summed whole and summed along the rows, in f64 and f32.
#[test]
fn a_long_chain_runs_interleaved_blocks_at_every_length() {
    for dtype in [DType::F64, DType::F32] {
        for n in (1..=19).chain([31, 32, 33, 64, 67]) {
            let x = Tensor::rand_uniform(&[3, n], -1.0, 1.0, n as u64, dtype);
            let c = Tensor::rand_uniform(&[41], -1.0, 1.0, 7, dtype);
            let feeds = [("x", &x), ("c", &c)];
            let exe = compiled(&feeds, |t| {
                let (x, c) = (&t[0], &t[1]);
                let mut p = c.narrow(0, 40, 1);
                for j in (0..40).rev() {
                    p = p * x + c.narrow(0, j, 1);
                }
                let rows = p.sum_axes(&[1], false);
                vec![p.tanh(), (&p - x).square().sum(), rows]
            });
            let r = exe.report().expect("compiled");
            assert_eq!(r.interpreted_nodes, 0, "{r:?}");
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
            assert_close_to_interpreted(&exe, &feeds, tol);
        }
    }
}

fn assert_close_to_interpreted(exe: &Executable, feeds: &[(&str, &Tensor)], tol: f64) {
    let native = exe.run(feeds).unwrap();
    let interpreted = exe.run_interpreted(feeds).unwrap();
    for (a, b) in native.iter().zip(&interpreted) {
        assert_eq!(a.shape(), b.shape());
        for (x, y) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}

/// An integration's right-hand side, from the feeds and the state.
type Step = dyn Fn(&[Tensor], &Tensor) -> Tensor;

/// A piece that is a shifted stretch of a value the same loop computes
/// (`ode`'s `concat(1, y[..n−1])`) is carried in registers from the
/// elements before: a step of an integration is one loop, forwards for
/// shifts towards the end and backwards (a VJP's padding) for shifts
/// towards the start, across vector blocks and their remainders, for
/// shifts longer than a vector.
#[test]
fn shifted_stretches_of_a_loops_own_values_are_carried_in_registers() {
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        for n in [2, 3, 4, 5, 9, 37] {
            for shift in [1, 2, 3, 5].into_iter().filter(|&s| s < n) {
                let rand = |len, seed| Tensor::rand_uniform(&[len], -1.0, 1.0, seed, dtype);
                let (x, y, a) = (rand(n, 1), rand(n, 2), rand(shift, 3));
                let feeds = [("x", &x), ("y", &y), ("a", &a)];
                let forwards = move |t: &[Tensor], y: &Tensor| {
                    let rest = y.narrow(0, 0, n - shift);
                    let from_a = &t[0] * &Tensor::concat(&[&t[2], &rest], 0);
                    from_a + rest.try_pad(0, shift, n).unwrap()
                };
                let backwards = move |t: &[Tensor], y: &Tensor| {
                    let rest = y.narrow(0, shift, n - shift);
                    let to_a = &t[0] * &Tensor::concat(&[&rest, &t[2]], 0);
                    to_a + rest.try_pad(0, 0, n).unwrap()
                };
                let steps: [&Step; 2] = [&forwards, &backwards];
                for step in steps {
                    let exe = compiled(&feeds, |t| {
                        let mut y = t[1].clone();
                        for _ in 0..3 {
                            let k1 = step(t, &y);
                            let k2 = step(t, &(&y + &k1 * 0.5));
                            y = &y + &((k1 + k2) * 0.25);
                        }
                        vec![y]
                    });
                    let r = exe.report().expect("compiled");
                    let case = format!("{dtype:?} n={n} shift={shift}: {r:?}");
                    // About a loop per step: each stage's shift is read
                    // from registers, not from memory after a loop of its
                    // own (which would make at least 6).
                    assert!(r.kernels <= 4, "{case}");
                    assert_eq!((r.fused_pieces, r.interpreted_nodes), (12, 0), "{case}");
                    assert_close_to_interpreted(&exe, &feeds, tol);
                }
            }
        }
    }
}

/// Shifts in both directions read by one node cannot share a loop's
/// direction: the second is read from memory, and the values agree.
#[test]
fn shifts_from_both_sides_of_one_value_store_it_and_agree() {
    let (x, y) = (t(&[11], 1), t(&[11], 2));
    let feeds = [("x", &x), ("y", &y)];
    let exe = compiled(&feeds, |t| {
        let z = (&t[0] * &t[1]).sin();
        let before = z.try_pad(0, 1, 12).unwrap().narrow(0, 0, 11);
        let after = z.narrow(0, 1, 10).try_pad(0, 0, 11).unwrap();
        let ahead = Tensor::concat(&[&Tensor::ones(&[1], DType::F64), &z.narrow(0, 0, 10)], 0);
        vec![(&ahead * &after + &before).exp()]
    });
    let r = exe.report().expect("compiled");
    assert!(r.interpreted_nodes >= 1, "{r:?}");
    assert_native_equals_interpreted(&exe, &feeds);
}

/// The VJP of an integration through shifts runs backwards, a loop per
/// step, and equals the eager gradient.
#[test]
fn a_compiled_gradient_through_many_shifted_steps_is_a_few_loops() {
    let x = t(&[64], 5);
    let solve = |x: &Tensor| {
        let one = Tensor::ones(&[1], DType::F64);
        let f = |y: &Tensor| x * &Tensor::concat(&[&one, &y.narrow(0, 0, 63)], 0);
        let mut y = x.zeros_like();
        for _ in 0..6 {
            let k1 = f(&y);
            let k2 = f(&(&y + &k1 * 0.1));
            let k3 = f(&(&y + &k2 * 0.1));
            let k4 = f(&(&y + &k3 * 0.2));
            y = &y + &((k1 + (k2 + k3) * 2.0 + k4) * (0.2 / 6.0));
        }
        y.narrow(0, 63, 1).sum()
    };
    let eager = func::grad(solve, &x).unwrap();
    let graph = Graph::trace(&[("x", &x)], |t| {
        Ok(vec![chainrule::func::grad(solve, &t[0])?])
    })
    .unwrap();
    let exe = graph.compile();
    let r = exe.report().expect("compiled");
    // Read from memory, each stage would be a loop of its own, forwards
    // and backwards (48): carried, a loop per step each way, and the seed.
    assert_eq!((r.fused_pieces, r.interpreted_nodes), (48, 0), "{r:?}");
    assert!(r.kernels <= 2 * 6 + 1, "{r:?}");
    let compiled = exe.run(&[("x", &x)]).unwrap();
    for (a, b) in compiled[0]
        .to_vec::<f64>()
        .iter()
        .zip(eager.to_vec::<f64>())
    {
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

/// A fold along the axis a value is carried on cannot share the carrying
/// loop (it would restart at each piece): it runs as a loop of its own, and
/// the values agree.
#[test]
fn a_fold_across_a_carried_shift_runs_apart_and_agrees() {
    for dtype in [DType::F64, DType::F32] {
        let x = Tensor::rand_uniform(&[13], -1.0, 1.0, 7, dtype);
        let feeds = [("x", &x)];
        let exe = compiled(&feeds, |t| {
            let z = (&t[0] * 0.5).exp();
            let one = Tensor::ones(&[1], dtype);
            let shifted = Tensor::concat(&[&one, &z.narrow(0, 0, 12)], 0);
            vec![(&t[0] * &shifted).sum(), &z * &shifted]
        });
        let r = exe.report().expect("compiled");
        assert_eq!((r.interpreted_nodes, r.fused_pieces), (0, 1), "{r:?}");
        assert_close_to_interpreted(&exe, &feeds, 1e-6);
    }
}
