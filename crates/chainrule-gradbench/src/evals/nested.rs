//! What `particle` and `saddle` share: a gradient taken in either mode
//! (reverse: one backward pass; forward: one JVP per coordinate), and
//! GradBench's gradient-descent solver (`cpp/gradbench/gd.hpp`), written on
//! tensors so that an outer derivative flows through its iterations. Its
//! branches read values only; the iterates carry whatever derivative the
//! caller is taking.

use chainrule::{func, Result, Tensor};

/// The AD mode of one gradient: the letters of the function names (`rf` is
/// reverse outside, forward inside).
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    Forward,
    Reverse,
}

impl Mode {
    /// The (outer, inner) modes of a function name, or `None`.
    pub fn pair(function: &str) -> Option<(Mode, Mode)> {
        let mode = |c| match c {
            'f' => Some(Mode::Forward),
            'r' => Some(Mode::Reverse),
            _ => None,
        };
        let mut chars = function.chars();
        let (outer, inner) = (mode(chars.next()?)?, mode(chars.next()?)?);
        chars.next().is_none().then_some((outer, inner))
    }
}

/// `∇f(x)` for a 1-D `x`, in `mode`.
pub fn gradient(mode: Mode, f: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor) -> Result<Tensor> {
    match mode {
        Mode::Reverse => func::grad(f, x),
        Mode::Forward => {
            let n = x.numel();
            let columns = (0..n)
                .map(|i| {
                    let mut basis = vec![0.0f64; n];
                    basis[i] = 1.0;
                    let e = Tensor::from_vec(basis, &[n]);
                    Ok(func::jvp(f, x, &e)?.1.reshape(&[]))
                })
                .collect::<Result<Vec<Tensor>>>()?;
            Tensor::try_stack(&columns.iter().collect::<Vec<_>>(), 0)
        }
    }
}

fn norm(v: &Tensor) -> f64 {
    v.square().sum().sqrt().item()
}

/// `argmin f` from `start` by GradBench's solver: steps of `eta` (from
/// 1e-5) along the negative gradient, doubled after 10 improving steps,
/// halved after a step that does not improve, until the gradient or the
/// step is below 1e-5.
pub fn argmin(mode: Mode, f: &dyn Fn(&Tensor) -> Result<Tensor>, start: &Tensor) -> Result<Tensor> {
    let mut x = start.clone();
    let mut fx = f(&x)?.item();
    let mut gx = gradient(mode, f, &x)?;
    let (mut eta, mut improving) = (1e-5, 0);
    loop {
        if norm(&gx) <= 1e-5 {
            return Ok(x);
        }
        if improving == 10 {
            eta *= 2.0;
            improving = 0;
            continue;
        }
        let next = &x - &(&gx * eta);
        if norm(&(&x - &next)) <= 1e-5 {
            return Ok(x);
        }
        let f_next = f(&next)?.item();
        if f_next < fx {
            x = next;
            fx = f_next;
            gx = gradient(mode, f, &x)?;
            improving += 1;
        } else {
            eta /= 2.0;
            improving = 0;
        }
    }
}

/// `argmax f` from `start`: the argmin of `−f`.
pub fn argmax(mode: Mode, f: &dyn Fn(&Tensor) -> Result<Tensor>, start: &Tensor) -> Result<Tensor> {
    argmin(mode, &|x: &Tensor| Ok(-f(x)?), start)
}
