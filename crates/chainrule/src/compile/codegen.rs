//! Native code for [`Kernel`]s through Cranelift: each kernel becomes one
//! function `fn(operands: *const *mut u8)`, a loop nest whose shape,
//! strides and offsets are constants. Arithmetic, comparisons, `where`,
//! casts and the cheap unary ops are instructions; the other rows of the op
//! table are calls to their own element function ([`UnaryOp::apply`],
//! [`BinaryOp::apply`]), so every row compiles and means what the
//! interpreter means by it.

use super::kernel::{Gather, Instr, Kernel, Operand, Part};
use crate::error::{Error, Result};
use crate::ops::{BinaryOp, CompareOp, ReduceOp, UnaryOp};
use crate::DType;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, Endianness, FuncRef, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind,
    Type, Value,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use std::collections::HashMap;

/// A compiled kernel's entry point: the operands' base pointers in order.
pub(crate) type KernelFn = unsafe extern "C" fn(*const *mut u8);

/// The machine code of a set of kernels, freed when dropped. The ops that
/// calls reach are kept here, at stable addresses, as the code points at them.
#[derive(Default)]
pub(crate) struct Code {
    modules: Vec<JITModule>,
    pub entries: Vec<KernelFn>,
    /// The distinct functions behind `entries`.
    pub functions: usize,
    // Boxed: each op's address is baked into the code, and must not move
    // when the vector grows.
    #[allow(clippy::vec_box)]
    _unary: Vec<Box<UnaryOp>>,
    #[allow(clippy::vec_box)]
    _binary: Vec<Box<BinaryOp>>,
}

// SAFETY: the module is only read after `finalize_definitions` (the code is
// immutable) and freed once, in `drop`; the boxed ops are never mutated.
unsafe impl Send for Code {}
unsafe impl Sync for Code {}
// Nothing a panic interrupts can leave the code half-changed (it is never
// changed): a loop's native code lives in tensors' nodes, which must stay
// unwind-safe (`catch_unwind` around tensor code).
impl std::panic::UnwindSafe for Code {}
impl std::panic::RefUnwindSafe for Code {}

impl Code {
    /// Takes over `other`'s modules and the ops its code calls (its
    /// entries stay valid while `self` lives).
    fn absorb(&mut self, mut other: Code) {
        self.modules.append(&mut other.modules);
        self._unary.append(&mut other._unary);
        self._binary.append(&mut other._binary);
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        for m in self.modules.drain(..) {
            // SAFETY: every entry point dies with `self`.
            unsafe { m.free_memory() }
        }
    }
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::invalid("compile", format!("code generation failed: {e}"))
}

/// A comparison row's condition code.
pub(super) fn float_cc(op: CompareOp) -> FloatCC {
    match op {
        CompareOp::Gt => FloatCC::GreaterThan,
        CompareOp::Ge => FloatCC::GreaterThanOrEqual,
        CompareOp::Lt => FloatCC::LessThan,
        CompareOp::Le => FloatCC::LessThanOrEqual,
        CompareOp::Eq => FloatCC::Equal,
        // Unordered or unequal: NaN is unequal to everything, as in Rust.
        CompareOp::Ne => FloatCC::NotEqual,
    }
}

/// The float constant `c` of `dtype`.
pub(super) fn float_constant<'f>(ins: impl InstBuilder<'f>, c: f64, dtype: DType) -> Value {
    match dtype {
        DType::F32 => ins.f32const(c as f32),
        DType::F64 => ins.f64const(c),
        other => crate::storage::refused(other),
    }
}

pub(super) fn float(d: DType) -> Type {
    match d {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        other => crate::storage::refused(other),
    }
}

extern "C" fn unary_f32(op: *const UnaryOp, x: f32) -> f32 {
    // SAFETY: `op` points into `Code::_unary`, alive while the code is.
    unsafe { (*op).apply(x) }
}
extern "C" fn unary_f64(op: *const UnaryOp, x: f64) -> f64 {
    // SAFETY: as `unary_f32`.
    unsafe { (*op).apply(x) }
}
extern "C" fn binary_f32(op: *const BinaryOp, a: f32, b: f32) -> f32 {
    // SAFETY: `op` points into `Code::_binary`, alive while the code is.
    unsafe { (*op).apply(a, b) }
}
extern "C" fn binary_f64(op: *const BinaryOp, a: f64, b: f64) -> f64 {
    // SAFETY: as `binary_f32`.
    unsafe { (*op).apply(a, b) }
}

/// The element functions compiled code calls, by name.
const CALLS: [(&str, usize); 4] = [
    ("cr_unary_f32", 1),
    ("cr_unary_f64", 1),
    ("cr_binary_f32", 2),
    ("cr_binary_f64", 2),
];

/// Element functions for the common transcendental rows, called directly
/// (each its row's `apply`, monomorphic: no op to look up per element),
/// and on x86-64 their vector forms: one call per 128-bit vector, and one
/// per interleaved group's vectors (`$f32b`, `$f64b`: the lanes in memory
/// and their count), which runs the row's `forward_in_place` at the CPU's
/// widest registers, as the eager kernels do.
macro_rules! direct_unary {
    ($($variant:ident => $f32:ident, $f64:ident, $f32x4:ident, $f64x2:ident,
       $f32b:ident, $f64b:ident;)*) => {
        $(
            extern "C" fn $f32(x: f32) -> f32 {
                UnaryOp::$variant {}.apply(x)
            }
            extern "C" fn $f64(x: f64) -> f64 {
                UnaryOp::$variant {}.apply(x)
            }
            #[cfg(target_arch = "x86_64")]
            #[allow(improper_ctypes_definitions)] // see `lanes`
            extern "C" fn $f32x4(x: lanes::F32x4) -> lanes::F32x4 {
                lanes::map::<_, f32, 4>(x, |v| UnaryOp::$variant {}.apply(v))
            }
            #[cfg(target_arch = "x86_64")]
            #[allow(improper_ctypes_definitions)] // see `lanes`
            extern "C" fn $f64x2(x: lanes::F64x2) -> lanes::F64x2 {
                lanes::map::<_, f64, 2>(x, |v| UnaryOp::$variant {}.apply(v))
            }
            #[cfg(target_arch = "x86_64")]
            extern "C" fn $f32b(p: *mut f32, n: usize) {
                // SAFETY: the kernel passes its slot of its group's n lanes.
                let lanes = unsafe { std::slice::from_raw_parts_mut(p, n) };
                UnaryOp::$variant {}.forward_in_place(lanes);
            }
            #[cfg(target_arch = "x86_64")]
            extern "C" fn $f64b(p: *mut f64, n: usize) {
                // SAFETY: the kernel passes its slot of its group's n lanes.
                let lanes = unsafe { std::slice::from_raw_parts_mut(p, n) };
                UnaryOp::$variant {}.forward_in_place(lanes);
            }
        )*
        /// The ops called directly, in the order of [`direct_calls`].
        const DIRECT: &[UnaryOp] = &[$(UnaryOp::$variant {}),*];

        /// Each direct op's f32 and f64 functions, by name, then (on
        /// x86-64) each op's vector functions.
        fn direct_calls() -> Vec<(&'static str, *const u8, Type)> {
            let mut calls = vec![$(
                (stringify!($f32), $f32 as *const u8, types::F32),
                (stringify!($f64), $f64 as *const u8, types::F64),
            )*];
            #[cfg(target_arch = "x86_64")]
            calls.extend([$(
                (stringify!($f32x4), $f32x4 as *const u8, types::F32X4),
                (stringify!($f64x2), $f64x2 as *const u8, types::F64X2),
            )*]);
            calls
        }

        /// Each direct op's functions over an interleaved group (x86-64).
        fn block_calls() -> Vec<(&'static str, *const u8)> {
            #[cfg(target_arch = "x86_64")]
            return vec![$(
                (stringify!($f32b), $f32b as *const u8),
                (stringify!($f64b), $f64b as *const u8),
            )*];
            #[cfg(not(target_arch = "x86_64"))]
            Vec::new()
        }
    };
}

/// 128-bit vectors as the x86-64 C ABI passes them (in one XMM register,
/// as Cranelift passes its `f32x4` and `f64x2`). Rust's lint calls SIMD
/// types not FFI-safe because their ABI depends on target features; SSE2,
/// which these need, is part of every x86-64 target.
#[cfg(target_arch = "x86_64")]
mod lanes {
    pub(super) use std::arch::x86_64::{__m128 as F32x4, __m128d as F64x2};

    /// `f` on each lane.
    #[inline(always)]
    pub(super) fn map<V: Copy, T: Copy + Default, const N: usize>(v: V, f: impl Fn(T) -> T) -> V {
        assert_eq!(std::mem::size_of::<V>(), std::mem::size_of::<[T; N]>());
        // SAFETY: same size (checked), and every bit pattern is a valid
        // float vector and float array.
        let a: [T; N] = unsafe { std::mem::transmute_copy(&v) };
        let out = a.map(f);
        unsafe { std::mem::transmute_copy(&out) }
    }
}

direct_unary! {
    Sin => cr_sin_f32, cr_sin_f64, cr_sin_f32x4, cr_sin_f64x2, cr_sin_f32b, cr_sin_f64b;
    Cos => cr_cos_f32, cr_cos_f64, cr_cos_f32x4, cr_cos_f64x2, cr_cos_f32b, cr_cos_f64b;
    Exp => cr_exp_f32, cr_exp_f64, cr_exp_f32x4, cr_exp_f64x2, cr_exp_f32b, cr_exp_f64b;
    Log => cr_log_f32, cr_log_f64, cr_log_f32x4, cr_log_f64x2, cr_log_f32b, cr_log_f64b;
    Tanh => cr_tanh_f32, cr_tanh_f64, cr_tanh_f32x4, cr_tanh_f64x2, cr_tanh_f32b, cr_tanh_f64b;
    Sigmoid => cr_sigmoid_f32, cr_sigmoid_f64, cr_sigmoid_f32x4, cr_sigmoid_f64x2,
        cr_sigmoid_f32b, cr_sigmoid_f64b;
}

/// The forms of a direct op's function: on one element, on one 128-bit
/// vector, on an interleaved group's vectors in memory.
#[derive(Clone, Copy)]
enum Form {
    Element,
    Vector,
    Group,
}

/// Where `op`'s function of `form` in `dtype` sits among the declared calls
/// ([`build`]): after [`CALLS`], each form's functions op by op, f32 then
/// f64. `None` for an op without direct functions.
fn direct_call(op: UnaryOp, dtype: DType, form: Form) -> Option<usize> {
    let k = DIRECT.iter().position(|d| *d == op)?;
    let f64 = (dtype == DType::F64) as usize;
    Some(CALLS.len() + 2 * (form as usize * DIRECT.len() + k) + f64)
}

/// Compiles `kernels` into one module. Kernels that differ only in the
/// buffers they are given (the row-by-row pullbacks of a Jacobian: hundreds
/// of one shape) are one function: code generation takes time per function.
pub(crate) fn compile(kernels: &[Kernel]) -> Result<Code> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut distinct: Vec<&Kernel> = Vec::new();
    let function: Vec<usize> = kernels
        .iter()
        .map(|k| {
            *index.entry(format!("{k:?}")).or_insert_with(|| {
                distinct.push(k);
                distinct.len() - 1
            })
        })
        .collect();
    // Long interleaved chains are compiled without Cranelift's optimizer:
    // it would schedule each block's chain whole, one after the other, and
    // undo the interleaving (3× slower on llsq's Horner loop).
    let (ordered, optimized): (Vec<usize>, Vec<usize>) =
        (0..distinct.len()).partition(|&n| keeps_order(distinct[n]));
    let mut code = Code::default();
    let mut entry_of = vec![None; distinct.len()];
    for (set, opt_level) in [(optimized, "speed"), (ordered, "none")] {
        if set.is_empty() {
            continue;
        }
        let part = build(set.len(), opt_level, |j, a| {
            let kernel = distinct[set[j]];
            Emitter::new(kernel, a.b, a.ptr, a.calls, a.code).emit();
            if std::env::var_os("CHAINRULE_DUMP_KERNELS").is_some() {
                // For whoever tunes the code generator: each kernel's IR.
                eprintln!("kernel{}: {kernel:?}\n{}", set[j], a.b.func.display());
            }
            Ok(())
        })?;
        for (&n, &entry) in set.iter().zip(&part.entries) {
            entry_of[n] = Some(entry);
        }
        code.absorb(part);
    }
    code.functions = distinct.len();
    code.entries = function
        .iter()
        .map(|&f| entry_of[f].expect("every kernel compiled"))
        .collect();
    Ok(code)
}

/// Compiles `count` functions `fn(operands: *const *mut u8)` into one
/// module, `write(n, …)` writing the body of the `n`-th (its entry block is
/// the builder's to create).
pub(crate) fn build(
    count: usize,
    opt_level: &str,
    mut write: impl FnMut(usize, &mut Arith) -> Result<()>,
) -> Result<Code> {
    let mut flags = settings::builder();
    flags.set("opt_level", opt_level).map_err(err)?;
    flags.set("is_pic", "false").map_err(err)?;
    flags.set("use_colocated_libcalls", "false").map_err(err)?;
    let isa = cranelift_native::builder()
        .map_err(err)?
        .finish(settings::Flags::new(flags))
        .map_err(err)?;
    let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    jb.symbol("cr_unary_f32", unary_f32 as *const u8);
    jb.symbol("cr_unary_f64", unary_f64 as *const u8);
    jb.symbol("cr_binary_f32", binary_f32 as *const u8);
    jb.symbol("cr_binary_f64", binary_f64 as *const u8);
    let direct = direct_calls();
    for (name, f, _) in &direct {
        jb.symbol(*name, *f);
    }
    let blocks = block_calls();
    for (name, f) in &blocks {
        jb.symbol(*name, *f);
    }
    let mut module = JITModule::new(jb);
    let ptr = module.target_config().pointer_type();
    // Every called function, declared as an import of its signature, in the
    // order `direct_call` numbers them.
    let mut calls = Vec::new();
    let mut import = |name: &str, params: &[Type], returns: &[Type]| -> Result<()> {
        let mut sig = module.make_signature();
        sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        sig.returns
            .extend(returns.iter().map(|&t| AbiParam::new(t)));
        let id = module.declare_function(name, Linkage::Import, &sig);
        calls.push(id.map_err(err)?);
        Ok(())
    };
    for (k, (name, arity)) in CALLS.iter().enumerate() {
        let t = if k % 2 == 0 { types::F32 } else { types::F64 };
        // The op's pointer, then its operands.
        let params: Vec<Type> = std::iter::once(ptr).chain(vec![t; *arity]).collect();
        import(name, &params, &[t])?;
    }
    for (name, _, t) in &direct {
        import(name, &[*t], &[*t])?;
    }
    for (name, _) in &blocks {
        // The group's lanes in memory, and how many.
        import(name, &[ptr, ptr], &[])?;
    }
    let mut code = Code {
        modules: Vec::new(),
        entries: Vec::new(),
        functions: count,
        _unary: Vec::new(),
        _binary: Vec::new(),
    };
    let frontend = module.target_config();
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut ids = Vec::new();
    for n in 0..count {
        ctx.func.signature.params.push(AbiParam::new(ptr));
        let id = module
            .declare_function(&format!("kernel{n}"), Linkage::Local, &ctx.func.signature)
            .map_err(err)?;
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let refs: Vec<FuncRef> = calls
                .iter()
                .map(|&c| module.declare_func_in_func(c, b.func))
                .collect();
            let mut a = Arith {
                b: &mut b,
                ptr,
                calls: &refs,
                code: &mut code,
            };
            write(n, &mut a)?;
            b.seal_all_blocks();
            b.finalize(frontend);
        }
        // `CHAINRULE_DUMP_KERNELS=asm`: each function's machine code too.
        let asm = std::env::var_os("CHAINRULE_DUMP_KERNELS").is_some_and(|v| v == "asm");
        ctx.set_disasm(asm);
        module.define_function(id, &mut ctx).map_err(err)?;
        if let Some(vcode) = ctx.compiled_code().and_then(|c| c.vcode.as_ref()) {
            eprintln!("=== kernel{n}\n{vcode}");
        }
        module.clear_context(&mut ctx);
        ids.push(id);
    }
    module.finalize_definitions().map_err(err)?;
    code.entries = ids
        .iter()
        .map(|&id: &FuncId| {
            let p = module.get_finalized_function(id);
            // SAFETY: defined above with the `KernelFn` signature.
            unsafe { std::mem::transmute::<*const u8, KernelFn>(p) }
        })
        .collect();
    code.modules.push(module);
    Ok(code)
}

/// How many vector blocks an interleaved innermost loop runs at a time.
const INTERLEAVE: usize = 4;

/// The same, in a kernel that calls a transcendental on its group's
/// vectors: the call runs the element function over the group's lanes at
/// the CPU's widest registers, and over [`INTERLEAVE`] blocks that is one
/// 8-lane vector of f64, a serial wait on the function's chain of ~25
/// dependent operations. 16 blocks are four such vectors side by side
/// (log-sum-exp under `func::jit`, n=80000: 218 µs, against 416 µs with
/// 4 blocks).
const INTERLEAVE_CALLING: usize = 16;

/// How many vector accumulators a max or min over an interleaved loop
/// keeps: 4 cover the compare-and-select's latency, and more would take
/// registers from the blocks' own values.
const BLOCK_ACCUMULATORS: usize = 4;

/// The shortest body chain whose interleaving is kept from Cranelift's
/// optimizer. A shorter one leaves room in the CPU's reorder window for
/// the next iterations, which then overlap by themselves (a kmeans step's
/// few operations per element): it is optimized, and its unrolled loop
/// saves only the loop's own instructions (4% fewer on kmeans' direction).
/// Unoptimized code for it costs more than it gains (8% more there).
const MIN_ORDERED_CHAIN: usize = 32;

/// A reduction's accumulators: a scalar, and a vector one for the lanes of
/// a vectorized innermost loop; and the loop level whose entry starts them
/// (the outermost level below which every axis is reduced).
#[derive(Clone, Copy)]
struct Acc {
    scalar: Variable,
    vector: Option<Variable>,
    /// A max or min in an interleaved loop: [`BLOCK_ACCUMULATORS`] vector
    /// accumulators that the group's blocks take in turn, so that the
    /// folds are independent chains (one accumulator makes them a serial
    /// wait on the compare-and-select's latency). A sum keeps one, so that
    /// its order, and its bits, are those of the plain vector loop.
    per_block: Option<[Variable; BLOCK_ACCUMULATORS]>,
    level: usize,
}

/// Writes one kernel's function.
struct Emitter<'a, 'b> {
    k: &'a Kernel,
    b: &'a mut FunctionBuilder<'b>,
    ptr: Type,
    calls: &'a [FuncRef],
    code: &'a mut Code,
    /// Each operand's base pointer, loaded at entry.
    bases: Vec<Value>,
    /// Each instruction's value (invariant ones from the entry block), and
    /// in the vector body its vector value.
    values: Vec<Option<Value>>,
    vectors: Vec<Option<Value>>,
    invariant: Vec<bool>,
    accs: Vec<Option<Acc>>,
    /// The vector type of the innermost loop, when it can be vectorized.
    simd: Option<Type>,
    /// Whether the vector body is being written.
    in_vector: bool,
    /// The segment of a split loop being written.
    segment: usize,
    /// Per instruction whose value later iterations read: its values at the
    /// last elements done, the latest first; in the vector loop, the same
    /// as whole vectors (the latest block first, each in lane order).
    history: Vec<Vec<Variable>>,
    vector_history: Vec<Vec<Variable>>,
    /// In the vector body being written, each invariant splat across the
    /// lanes (once for all its uses and blocks: unoptimized code would
    /// repeat it per use).
    splats: Vec<Option<Value>>,
    /// In an interleaved body, each block's vector values (the one being
    /// written swapped out into `vectors`), and which block that is (0
    /// elsewhere).
    group: Vec<Vec<Option<Value>>>,
    block: usize,
    /// How many blocks an interleaved group has.
    blocks: usize,
    /// Per operand, the bytes from the address the loops carry to its
    /// element (its start offset): the loads' and stores' immediate
    /// field, which x86-64 adds in the load itself.
    disp: Vec<i32>,
}

impl<'a, 'b> Emitter<'a, 'b> {
    fn new(
        k: &'a Kernel,
        b: &'a mut FunctionBuilder<'b>,
        ptr: Type,
        calls: &'a [FuncRef],
        code: &'a mut Code,
    ) -> Self {
        let mut e = Emitter {
            k,
            b,
            ptr,
            calls,
            code,
            bases: Vec::new(),
            values: vec![None; k.instrs.len()],
            vectors: vec![None; k.instrs.len()],
            invariant: k.invariant(),
            accs: vec![None; k.instrs.len()],
            simd: simd_type(k),
            in_vector: false,
            segment: 0,
            history: vec![Vec::new(); k.instrs.len()],
            vector_history: vec![Vec::new(); k.instrs.len()],
            splats: Vec::new(),
            group: Vec::new(),
            block: 0,
            blocks: INTERLEAVE,
            disp: Vec::new(),
        };
        let calling = (0..k.instrs.len()).any(|i| !e.invariant[i] && e.block_call(i).is_some());
        if calling {
            e.blocks = INTERLEAVE_CALLING;
        }
        e
    }

    /// Declares the registers that carry values across iterations, zero
    /// until the loop fills them.
    fn declare_history(&mut self) {
        for (instr, _) in &self.k.instrs {
            let Instr::Piece(parts) = instr else { continue };
            for part in parts {
                if let Part::Carry { value, shift } = *part {
                    let depth = shift.unsigned_abs();
                    let dtype = self.k.instrs[value].1;
                    while self.history[value].len() < depth {
                        let var = self.b.declare_var(float(dtype));
                        let zero = float_constant(self.b.ins(), 0.0, dtype);
                        self.b.def_var(var, zero);
                        self.history[value].push(var);
                    }
                    if let Some(t) = self.simd {
                        let blocks = depth.div_ceil(t.lane_count() as usize);
                        while self.vector_history[value].len() < blocks {
                            let var = self.b.declare_var(t);
                            self.vector_history[value].push(var);
                        }
                    }
                }
            }
        }
    }

    fn emit(mut self) {
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        let table = self.b.block_params(entry)[0];
        let buffers = self.k.operands.iter().map(|o| o.buffer + 1).max();
        let pointers: Vec<Value> = (0..buffers.unwrap_or(0))
            .map(|entry| {
                let at = (entry * self.ptr.bytes() as usize) as i32;
                let flags = MemFlagsData::trusted();
                self.b.ins().load(self.ptr, flags, table, at)
            })
            .collect();
        self.bases = self.k.operands.iter().map(|o| pointers[o.buffer]).collect();
        let at: Vec<Value> = self.start_addresses();
        let rank = self.k.dims.len();
        for (i, (instr, dtype)) in self.k.instrs.iter().enumerate() {
            if let Instr::Reduce { operand, .. } = *instr {
                let strides = &self.k.operands[operand].strides;
                let level = (0..=rank)
                    .rev()
                    .take_while(|&l| l == rank || strides[l] == 0)
                    .last()
                    .unwrap_or(rank);
                let scalar = self.b.declare_var(float(*dtype));
                let vector = self.simd.map(|t| self.b.declare_var(t));
                let order_free = matches!(instr, Instr::Reduce { op, .. } if *op != ReduceOp::Sum);
                let per_block = match self.simd {
                    Some(t) if order_free && interleaves(self.k) => {
                        Some(std::array::from_fn(|_| self.b.declare_var(t)))
                    }
                    _ => None,
                };
                self.accs[i] = Some(Acc {
                    scalar,
                    vector,
                    per_block,
                    level,
                });
                if (0..level).any(|l| strides[l] == 0) {
                    // Outputs are folded into across iterations of outer loops.
                    self.fill(operand, at[operand], *dtype, self.reduce_init(i));
                }
            }
        }
        self.declare_history();
        for i in 0..self.k.instrs.len() {
            if self.invariant[i] {
                let v = self.instr(i, &at);
                self.values[i] = v;
            }
        }
        self.level(0, at);
        self.b.ins().return_(&[]);
    }

    /// Each operand's address where the loops start, less its
    /// displacement (see [`Emitter::disp`]). The loops carry addresses, not
    /// element offsets: a load in the innermost loop is then one address
    /// plus the scaled index, which x86-64 folds into the load itself, and
    /// an operand holds one register, not a base and an offset.
    fn start_addresses(&mut self) -> Vec<Value> {
        (0..self.k.operands.len())
            .map(|o| {
                let bytes = self.k.operands[o].offset as i64 * self.size(o);
                match i32::try_from(bytes) {
                    Ok(disp) => {
                        self.disp.push(disp);
                        self.bases[o]
                    }
                    Err(_) => {
                        self.disp.push(0);
                        self.b.ins().iadd_imm_s(self.bases[o], bytes)
                    }
                }
            })
            .collect()
    }

    /// The bytes of one element of operand `o`.
    fn size(&self, o: usize) -> i64 {
        self.k.operands[o].dtype.size() as i64
    }

    /// `index · bytes`, a shift where `bytes` is a power of two (the
    /// address modes' scales).
    fn scaled(&mut self, index: Value, bytes: i64) -> Value {
        match bytes {
            b if b > 0 && (b as u64).is_power_of_two() => {
                self.b.ins().ishl_imm_s(index, b.trailing_zeros() as i64)
            }
            b => self.b.ins().imul_imm_s(index, b),
        }
    }

    fn reduce_init(&self, i: usize) -> f64 {
        match self.k.instrs[i].0 {
            Instr::Reduce { op, .. } => match op {
                ReduceOp::Sum => 0.0,
                ReduceOp::Max => f64::NEG_INFINITY,
                ReduceOp::Min => f64::INFINITY,
            },
            _ => unreachable!("only reductions have an initial value"),
        }
    }

    /// The constant `c`, splat across the lanes in the vector body.
    fn constant(&mut self, c: f64, dtype: DType) -> Value {
        let v = float_constant(self.b.ins(), c, dtype);
        self.widen(v)
    }

    /// A scalar as a vector of equal lanes, in the vector body.
    fn widen(&mut self, v: Value) -> Value {
        match (self.in_vector, self.simd) {
            (true, Some(t)) => self.b.ins().splat(t, v),
            _ => v,
        }
    }

    /// The variable reduction `i` folds into here: in an interleaved group
    /// the block's own (a max or min), in a vector body the vector one,
    /// else the scalar.
    fn acc_var(&self, i: usize) -> Variable {
        let acc = self.accs[i].expect("declared at entry");
        match (acc.per_block, acc.vector) {
            (Some(blocks), _) if self.in_vector && !self.group.is_empty() => {
                blocks[self.block % BLOCK_ACCUMULATORS]
            }
            (_, Some(v)) if self.in_vector => v,
            _ => acc.scalar,
        }
    }

    /// A reduction's vector accumulator `v` with its blocks' accumulators
    /// folded in (once per entry of its level: a short chain is enough).
    fn fold_blocks(&mut self, op: ReduceOp, acc: &Acc, v: Variable, dtype: DType) -> Value {
        let rest = self.b.use_var(v);
        acc.per_block.iter().flatten().fold(rest, |folded, &var| {
            let block = self.b.use_var(var);
            self.combine(op, folded, block, dtype)
        })
    }

    /// The loop over axis `level` (or the body, past the last axis), with
    /// each operand's address so far.
    fn level(&mut self, level: usize, offsets: Vec<Value>) {
        let rank = self.k.dims.len();
        for i in 0..self.k.instrs.len() {
            let Some(acc) = self.accs[i].filter(|a| a.level == level) else {
                continue;
            };
            let dtype = self.k.instrs[i].1;
            let init = self.reduce_init(i);
            if level == rank {
                let c = self.constant(init, dtype);
                let var = self.acc_var(i);
                self.b.def_var(var, c);
            } else {
                let c = self.constant(init, dtype);
                self.b.def_var(acc.scalar, c);
                if let (Some(v), Some(t)) = (acc.vector, self.simd) {
                    let splat = self.b.ins().splat(t, c);
                    self.b.def_var(v, splat);
                    for &var in acc.per_block.iter().flatten() {
                        self.b.def_var(var, splat);
                    }
                }
            }
        }
        let split = self.k.split.clone().filter(|s| s.axis == level);
        if level == rank {
            self.body(&offsets);
        } else if let Some(split) = split {
            // Each segment in turn (the last first when descending),
            // reading its own pieces.
            let n = self.k.dims[level];
            let ends = split.starts.iter().skip(1).copied().chain([n]);
            let mut segments: Vec<(usize, (usize, usize))> =
                split.starts.iter().copied().zip(ends).enumerate().collect();
            if split.descending {
                segments.reverse();
            }
            for (s, (from, to)) in segments {
                self.segment = s;
                self.stretch(level, &offsets, from as i64, to as i64, split.descending);
            }
        } else {
            self.stretch(level, &offsets, 0, self.k.dims[level] as i64, false);
        }
        for i in 0..self.k.instrs.len() {
            if let (Some(acc), Instr::Reduce { op, operand, .. }) = (
                self.accs[i].filter(|a| a.level == level),
                &self.k.instrs[i].0,
            ) {
                let (op, operand, dtype) = (*op, *operand, self.k.instrs[i].1);
                let var = self.acc_var(i);
                let mut value = self.b.use_var(var);
                if level < rank {
                    if let Some(v) = acc.vector {
                        let lanes = self.fold_blocks(op, &acc, v, dtype);
                        let folded = self.fold_lanes(op, lanes, dtype);
                        value = self.combine(op, value, folded, dtype);
                    }
                }
                let strides = &self.k.operands[operand].strides;
                if (0..level).any(|l| strides[l] == 0) {
                    let old = self.load(operand, offsets[operand], dtype);
                    value = self.combine(op, old, value, dtype);
                }
                self.store(operand, offsets[operand], value);
            }
        }
    }

    /// Elements `from..to` of axis `level` (from the last when
    /// `descending`); the innermost axis a vector of lanes at a time, and
    /// the rest one by one.
    fn stretch(&mut self, level: usize, offsets: &[Value], from: i64, to: i64, descending: bool) {
        let lanes = self.simd.map_or(1, |t| t.lane_count() as i64);
        let innermost = level + 1 == self.k.dims.len();
        let chunks = if innermost && lanes > 1 {
            (to - from) / lanes
        } else {
            0
        };
        let rest = from + chunks * lanes;
        let vectors = |e: &mut Self, index: Value| {
            let first = e.b.ins().imul_imm_s(index, lanes);
            let first = e.b.ins().iadd_imm_s(first, from);
            let inner = e.advance(offsets, level, first);
            e.in_vector_body(|e| e.level(level + 1, inner));
        };
        let ones = |e: &mut Self, index: Value| {
            let inner = e.advance(offsets, level, index);
            e.level(level + 1, inner);
        };
        if chunks == 0 {
            return self.walk(from, to, descending, ones);
        }
        // Vectors from `from`, then the rest: backwards, the rest first.
        if descending {
            self.walk(rest, to, true, ones);
        }
        self.history_to_vectors(descending);
        let unroll = match self.interleavable(level) {
            true => self.blocks as i64,
            false => 1,
        };
        let groups = chunks / unroll;
        if groups > 0 && unroll > 1 {
            self.walk(0, groups, false, |e, group| {
                e.interleaved(level, offsets, from, group)
            });
        }
        let done = if unroll > 1 { groups * unroll } else { 0 };
        self.walk(done, chunks, descending, vectors);
        self.history_to_scalars(descending);
        if !descending {
            self.walk(rest, to, false, ones);
        }
    }

    /// Whether the vector loop over axis `level` runs `self.blocks`
    /// blocks at a time: the innermost loop of a kernel that [`interleaves`].
    fn interleavable(&self, level: usize) -> bool {
        level + 1 == self.k.dims.len() && interleaves(self.k)
    }

    /// `self.blocks` consecutive vector blocks of the innermost loop, from
    /// block `group · self.blocks`: each instruction for every block before
    /// the next instruction, so that the blocks' chains are independent
    /// work side by side (one block's chain alone is a serial wait on
    /// each operation's latency). A sum folds the blocks in order, as the
    /// plain loop does, so results are the same bits; a max or min folds
    /// them into separate accumulators (see [`Acc::per_block`]).
    fn interleaved(&mut self, level: usize, offsets: &[Value], from: i64, group: Value) {
        let lanes = self.simd.expect("a vector loop").lane_count() as i64;
        let first = self.b.ins().imul_imm_s(group, self.blocks as i64 * lanes);
        let first = self.b.ins().iadd_imm_s(first, from);
        let block_offsets: Vec<Vec<Value>> = (0..self.blocks as i64)
            .map(|u| {
                let index = self.b.ins().iadd_imm_s(first, u * lanes);
                self.advance(offsets, level, index)
            })
            .collect();
        self.group = vec![vec![None; self.k.instrs.len()]; self.blocks];
        let varying: Vec<usize> = (0..self.k.instrs.len())
            .filter(|&i| !self.invariant[i])
            .collect();
        self.in_vector_body(|e| {
            for &i in &varying {
                if let Some(f) = e.block_call(i) {
                    e.unary_over_blocks(i, f);
                    continue;
                }
                for (block, at) in block_offsets.iter().enumerate() {
                    e.with_block(block, |e| e.vectors[i] = e.instr(i, at));
                }
            }
            // The history moves on by each block in turn, as the plain loop's.
            for block in 0..e.blocks {
                e.with_block(block, |e| {
                    for i in 0..e.k.instrs.len() {
                        if !e.history[i].is_empty() {
                            e.remember(i);
                        }
                    }
                });
            }
        });
        self.group.clear();
    }

    /// The function that applies instruction `i` to a whole interleaved
    /// group, where there is one: a direct unary op on x86-64.
    fn block_call(&self, i: usize) -> Option<FuncRef> {
        let (Instr::Unary(op, _), dtype) = self.k.instrs[i] else {
            return None;
        };
        // Absent from the table where there are no group forms.
        self.calls
            .get(direct_call(op, dtype, Form::Group)?)
            .copied()
    }

    /// Unary instruction `i` for every block of the group in one call of
    /// `f` on their vectors in a stack slot: a call per vector would spill
    /// the group's live vectors around each (every vector register is the
    /// caller's to save), and runs the element function 2 or 4 lanes wide.
    fn unary_over_blocks(&mut self, i: usize, f: FuncRef) {
        let Instr::Unary(_, a) = self.k.instrs[i].0 else {
            unreachable!("a unary instruction")
        };
        let mut args = Vec::with_capacity(self.blocks);
        for block in 0..self.blocks {
            self.with_block(block, |e| args.push(e.arg(a)));
        }
        let t = self.b.func.dfg.value_type(args[0]);
        let bytes = t.bytes();
        let data = StackSlotData::new(StackSlotKind::ExplicitSlot, bytes * self.blocks as u32, 4);
        let slot = self.b.create_sized_stack_slot(data);
        let (ptr, offset) = (self.ptr, |block: usize| (block as u32 * bytes) as i32);
        for (block, &v) in args.iter().enumerate() {
            self.b.ins().stack_store(ptr, v, slot, offset(block));
        }
        let at = self.b.ins().stack_addr(ptr, slot, 0);
        let lanes = self.blocks as i64 * t.lane_count() as i64;
        let lanes = self.b.ins().iconst(ptr, lanes);
        self.b.ins().call(f, &[at, lanes]);
        for block in 0..self.blocks {
            let v = self.b.ins().stack_load(ptr, t, slot, offset(block));
            self.group[block][i] = Some(v);
        }
    }

    /// `f` with block `block` of the interleaved group as the current one
    /// (its values in `vectors`).
    fn with_block(&mut self, block: usize, f: impl FnOnce(&mut Self)) {
        self.block = block;
        std::mem::swap(&mut self.vectors, &mut self.group[block]);
        f(self);
        std::mem::swap(&mut self.vectors, &mut self.group[block]);
        self.block = 0;
    }

    /// `f` writing a vector body (one block of code): each invariant is
    /// splat across the lanes at most once in it.
    fn in_vector_body(&mut self, f: impl FnOnce(&mut Self)) {
        self.in_vector = true;
        self.splats = vec![None; self.k.instrs.len()];
        f(self);
        self.in_vector = false;
    }

    /// Instruction `value`'s vector `back` blocks before the one being
    /// written (0: the one just before): in an interleaved group an earlier
    /// block of the group, else the history.
    fn earlier_block(&mut self, value: usize, back: usize) -> Value {
        match back.checked_sub(self.block) {
            Some(h) => self.b.use_var(self.vector_history[value][h]),
            None => self.group[self.block - 1 - back][value].expect("computed before"),
        }
    }

    /// Each operand's address at `index` along axis `level`.
    fn advance(&mut self, at: &[Value], level: usize, index: Value) -> Vec<Value> {
        (0..at.len())
            .map(|o| match self.k.operands[o].strides[level] {
                0 => at[o],
                s => {
                    let step = self.scaled(index, s as i64 * self.size(o));
                    self.b.ins().iadd(at[o], step)
                }
            })
            .collect()
    }

    /// The lanes of a vector folded by `op`, in lane order.
    fn fold_lanes(&mut self, op: ReduceOp, v: Value, dtype: DType) -> Value {
        let t = self.b.func.dfg.value_type(v);
        let mut acc = self.b.ins().extractlane(v, 0u8);
        for lane in 1..t.lane_count() as u8 {
            let x = self.b.ins().extractlane(v, lane);
            acc = self.combine(op, acc, x, dtype);
        }
        acc
    }

    /// `for index in start..end { body }`.
    fn for_loop(&mut self, start: i64, end: i64, body: impl FnOnce(&mut Self, Value)) {
        self.walk(start, end, false, body)
    }

    /// `for index in start..end { body }`, from the last index down when
    /// `descending`.
    fn walk(
        &mut self,
        start: i64,
        end: i64,
        descending: bool,
        body: impl FnOnce(&mut Self, Value),
    ) {
        let (first, more_if, bound, step) = match descending {
            true => (end - 1, IntCC::SignedGreaterThanOrEqual, start, -1),
            false => (start, IntCC::SignedLessThan, end, 1),
        };
        let (header, block, exit) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        let var = self.b.declare_var(types::I64);
        let first = self.b.ins().iconst(types::I64, first);
        self.b.def_var(var, first);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let index = self.b.use_var(var);
        let more = self.b.ins().icmp_imm_s(more_if, index, bound);
        self.b.ins().brif(more, block, &[], exit, &[]);
        self.b.switch_to_block(block);
        body(self, index);
        let next = self.b.ins().iadd_imm_s(index, step);
        self.b.def_var(var, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(exit);
    }

    /// `operand[0..numel] = value` from its start address `start`, numel
    /// the product of the axes the operand walks (its output elements).
    fn fill(&mut self, operand: usize, start: Value, dtype: DType, value: f64) {
        let o = &self.k.operands[operand];
        let n: usize = self
            .k
            .dims
            .iter()
            .zip(&o.strides)
            .filter(|(_, &s)| s != 0)
            .map(|(d, _)| d)
            .product();
        let v = self.constant(value, dtype);
        self.for_loop(0, n as i64, |e, index| {
            let bytes = e.scaled(index, e.size(operand));
            let at = e.b.ins().iadd(start, bytes);
            e.store(operand, at, v);
        });
    }

    /// Operand `o`'s element at address `at`, or in the vector body a
    /// vector of consecutive ones.
    fn load(&mut self, o: usize, at: Value, dtype: DType) -> Value {
        let disp = self.disp[o];
        match (self.in_vector, self.simd) {
            // Not `trusted`: that promises alignment, which a vector at an
            // arbitrary element offset lacks.
            (true, Some(t)) => self
                .b
                .ins()
                .load(t, MemFlagsData::new().with_notrap(), at, disp),
            _ => self
                .b
                .ins()
                .load(float(dtype), MemFlagsData::trusted(), at, disp),
        }
    }

    /// `value` into operand `o` at address `at`.
    fn store(&mut self, o: usize, at: Value, value: Value) {
        let disp = self.disp[o];
        let flags = if self.in_vector {
            MemFlagsData::new().with_notrap()
        } else {
            MemFlagsData::trusted()
        };
        self.b.ins().store(flags, value, at, disp);
    }

    /// The innermost body: every instruction that is not invariant.
    fn body(&mut self, offsets: &[Value]) {
        for i in 0..self.k.instrs.len() {
            if !self.invariant[i] {
                let v = self.instr(i, offsets);
                if self.in_vector {
                    self.vectors[i] = v;
                } else {
                    self.values[i] = v;
                }
            }
        }
        for i in 0..self.k.instrs.len() {
            if !self.history[i].is_empty() {
                self.remember(i);
            }
        }
    }

    /// Shifts instruction `i`'s history by the element (or in the vector
    /// body the block) just done.
    fn remember(&mut self, i: usize) {
        let x = self.arg(i);
        let vars = match self.in_vector {
            true => self.vector_history[i].clone(),
            false => self.history[i].clone(),
        }; // latest first
        let old: Vec<Value> = vars.iter().map(|&v| self.b.use_var(v)).collect();
        for (&var, &value) in vars.iter().zip(std::iter::once(&x).chain(&old)) {
            self.b.def_var(var, value);
        }
    }

    /// Where lane `lane` of history block `block` is among the elements
    /// done, counted back from the latest (1) in loop order.
    fn back(&self, block: usize, lane: usize, descending: bool) -> usize {
        let lanes = self.simd.expect("a vector loop").lane_count() as usize;
        match descending {
            true => block * lanes + lane + 1,
            false => (block + 1) * lanes - lane,
        }
    }

    /// Before a vector loop: the history as whole vectors.
    fn history_to_vectors(&mut self, descending: bool) {
        let t = self.simd.expect("a vector loop");
        for i in 0..self.history.len() {
            for (block, var) in self.vector_history[i].clone().into_iter().enumerate() {
                let mut v = None;
                for lane in 0..t.lane_count() as usize {
                    let back = self.back(block, lane, descending);
                    let x = match self.history[i].get(back - 1) {
                        Some(&h) => self.b.use_var(h),
                        // Deeper than any shift reads: never used.
                        None => float_constant(self.b.ins(), 0.0, self.k.instrs[i].1),
                    };
                    v = Some(match v {
                        None => self.b.ins().splat(t, x),
                        Some(v) => self.b.ins().insertlane(v, x, lane as u8),
                    });
                }
                self.b.def_var(var, v.expect("a vector has lanes"));
            }
        }
    }

    /// After a vector loop: the history element by element.
    fn history_to_scalars(&mut self, descending: bool) {
        let lanes = self.simd.expect("a vector loop").lane_count() as usize;
        for i in 0..self.history.len() {
            for (d, var) in self.history[i].clone().into_iter().enumerate() {
                let block = d / lanes;
                let lane = (0..lanes)
                    .find(|&l| self.back(block, l, descending) == d + 1)
                    .expect("each element done is in one lane");
                let v = self.b.use_var(self.vector_history[i][block]);
                let x = self.b.ins().extractlane(v, lane as u8);
                self.b.def_var(var, x);
            }
        }
    }

    /// Instruction `value`'s result `shift` elements back along the split
    /// axis (forward when negative): in the vector body, a window across
    /// this block and the history's blocks (one `palignr`).
    fn carried(&mut self, value: usize, shift: isize) -> Value {
        let depth = shift.unsigned_abs();
        if !self.in_vector {
            return self.b.use_var(self.history[value][depth - 1]);
        }
        let t = self.simd.expect("a vector body");
        let lanes = t.lane_count() as usize;
        let (q, r) = (depth / lanes, depth % lanes);
        let block = |e: &mut Self, b: usize| e.earlier_block(value, b);
        if r == 0 {
            return block(self, q - 1);
        }
        let near = match q {
            0 => self.arg(value),
            _ => block(self, q - 1),
        };
        let far = block(self, q);
        // Lanes `start..start + lanes` of the two blocks side by side.
        let (low, high, start) = match shift < 0 {
            true => (near, far, r),
            false => (far, near, lanes - r),
        };
        let width = t.lane_bits() as usize / 8;
        let mask: Vec<u8> = (0..16).map(|b| (start * width + b) as u8).collect();
        let mask = self.b.func.dfg.immediates.push(mask.into());
        let le = MemFlagsData::new().with_endianness(Endianness::Little);
        let (low, high) = (
            self.b.ins().bitcast(types::I8X16, le, low),
            self.b.ins().bitcast(types::I8X16, le, high),
        );
        let window = self.b.ins().shuffle(low, high, mask);
        self.b.ins().bitcast(t, le, window)
    }

    /// Instruction `i`'s value where it is used now: in the vector body a
    /// vector (an invariant value splat across the lanes).
    fn arg(&mut self, i: usize) -> Value {
        if self.in_vector {
            if self.invariant[i] {
                if let Some(v) = self.splats[i] {
                    return v;
                }
                let v = self.values[i].expect("invariants come first");
                let v = self.widen(v);
                self.splats[i] = Some(v);
                return v;
            }
            return self.vectors[i].expect("instructions come after their arguments");
        }
        self.values[i].expect("instructions come after their arguments")
    }

    fn instr(&mut self, i: usize, offsets: &[Value]) -> Option<Value> {
        let (instr, dtype) = self.k.instrs[i].clone();
        Some(match instr {
            Instr::Load(o) => self.load_operand(o, offsets, dtype),
            Instr::Piece(parts) => match parts[self.segment] {
                Part::Load(o) => self.load_operand(o, offsets, dtype),
                Part::Const(c) => self.constant(c, dtype),
                Part::Carry { value, shift } => self.carried(value, shift),
            },
            Instr::Unary(op, a) => {
                let a = self.arg(a);
                self.unary(op, a, dtype)
            }
            Instr::Binary(op, a, b) => {
                let (a, b) = (self.arg(a), self.arg(b));
                self.binary(op, a, b, dtype)
            }
            Instr::Compare(op, a, b) => {
                let (a, b) = (self.arg(a), self.arg(b));
                let t = self.b.ins().fcmp(float_cc(op), a, b);
                let (one, zero) = (self.constant(1.0, dtype), self.constant(0.0, dtype));
                self.select(t, one, zero)
            }
            Instr::Where(c, a, b) => {
                let cdt = self.k.instrs[c].1;
                let zero = self.constant(0.0, cdt);
                let (c, a, b) = (self.arg(c), self.arg(a), self.arg(b));
                let t = self.b.ins().fcmp(FloatCC::NotEqual, c, zero);
                self.select(t, a, b)
            }
            Instr::Cast(to, x) => {
                let v = self.arg(x);
                match (self.k.instrs[x].1, to) {
                    (DType::F32, DType::F64) => self.b.ins().fpromote(types::F64, v),
                    (DType::F64, DType::F32) => self.b.ins().fdemote(types::F32, v),
                    _ => v,
                }
            }
            Instr::Store { operand, value } => {
                let v = self.arg(value);
                self.store(operand, offsets[operand], v);
                return None;
            }
            Instr::Reduce { op, value, .. } => {
                let var = self.acc_var(i);
                let acc = self.b.use_var(var);
                let v = self.arg(value);
                let next = self.combine(op, acc, v, dtype);
                self.b.def_var(var, next);
                return None;
            }
        })
    }

    /// Operand `o` where the loop is.
    fn load_operand(&mut self, o: usize, offsets: &[Value], dtype: DType) -> Value {
        let operand = &self.k.operands[o];
        let walks_lanes = |o: &Operand| o.strides.last() != Some(&0);
        let lanes_differ = walks_lanes(operand)
            || operand
                .gather
                .is_some_and(|g| walks_lanes(&self.k.operands[g.by]));
        if self.in_vector && !lanes_differ {
            // Broadcast along the innermost axis: one element for all lanes.
            self.in_vector = false;
            let v = self.load_operand(o, offsets, dtype);
            self.in_vector = true;
            return self.widen(v);
        }
        match operand.gather {
            Some(g) => self.load_gathered(o, g, offsets, dtype),
            None => self.load(o, offsets[o], dtype),
        }
    }

    /// A gathered operand's element, or in the vector body one per lane,
    /// each at the index its lane reads.
    fn load_gathered(&mut self, o: usize, g: Gather, offsets: &[Value], dtype: DType) -> Value {
        let inner = |o: &Operand| *o.strides.last().unwrap_or(&0) as i64;
        let (step_o, step_by) = (inner(&self.k.operands[o]), inner(&self.k.operands[g.by]));
        // Read-only (no kernel writes an index or a gathered input), so
        // loads of one index by several operands merge.
        let flags = MemFlagsData::trusted().with_readonly();
        let (size_o, size_by) = (self.size(o), self.size(g.by));
        let (disp_o, disp_by) = (self.disp[o], self.disp[g.by]);
        // The address that lane `lane` reads (less operand `o`'s
        // displacement), by its index.
        let address = |e: &mut Self, lane: i64| {
            let disp = disp_by + (lane * step_by * size_by) as i32;
            let index = e.b.ins().load(types::I64, flags, offsets[g.by], disp);
            let moved = e.scaled(index, g.step as i64 * size_o);
            e.b.ins().iadd(offsets[o], moved)
        };
        let element = |e: &mut Self, lane: i64| {
            let at = address(e, lane);
            let disp = disp_o + (lane * step_o * size_o) as i32;
            e.b.ins().load(float(dtype), flags, at, disp)
        };
        match (self.in_vector, self.simd) {
            (true, Some(_)) if step_by == 0 && step_o == 1 => {
                // One index for all lanes (a gathered row): one vector load.
                let at = address(self, 0);
                self.load(o, at, dtype)
            }
            (true, Some(t)) => {
                let first = element(self, 0);
                let mut v = self.b.ins().scalar_to_vector(t, first);
                for lane in 1..t.lane_count() {
                    let x = element(self, lane as i64);
                    v = self.b.ins().insertlane(v, x, lane as u8);
                }
                v
            }
            _ => element(self, 0),
        }
    }

    fn combine(&mut self, op: ReduceOp, acc: Value, x: Value, dtype: DType) -> Value {
        match op {
            ReduceOp::Sum => self.b.ins().fadd(acc, x),
            ReduceOp::Max => self.binary(BinaryOp::Maximum, acc, x, dtype),
            ReduceOp::Min => self.binary(BinaryOp::Minimum, acc, x, dtype),
        }
    }

    /// The element arithmetic, on this function.
    fn arith(&mut self) -> Arith<'_, 'b> {
        Arith {
            b: self.b,
            ptr: self.ptr,
            calls: self.calls,
            code: self.code,
        }
    }

    fn select(&mut self, mask: Value, a: Value, b: Value) -> Value {
        self.arith().select(mask, a, b)
    }

    fn unary(&mut self, op: UnaryOp, x: Value, dtype: DType) -> Value {
        self.arith().unary(op, x, dtype)
    }

    fn binary(&mut self, op: BinaryOp, a: Value, b: Value, dtype: DType) -> Value {
        self.arith().binary(op, a, b, dtype)
    }
}

/// The arithmetic of one element (or a vector of them) in a function being
/// written: instructions, or calls of the op's element function.
pub(crate) struct Arith<'x, 'b> {
    pub b: &'x mut FunctionBuilder<'b>,
    pub ptr: Type,
    pub calls: &'x [FuncRef],
    pub code: &'x mut Code,
}

impl Arith<'_, '_> {
    /// The constant `c`, splat across the lanes when `like` is a vector.
    pub fn constant(&mut self, c: f64, dtype: DType, like: Value) -> Value {
        let v = float_constant(self.b.ins(), c, dtype);
        let t = self.b.func.dfg.value_type(like);
        if t.is_vector() {
            self.b.ins().splat(t, v)
        } else {
            v
        }
    }

    /// `if mask { a } else { b }`, lane by lane for vectors (whose masks
    /// are integer vectors of all-ones and all-zeros lanes).
    pub fn select(&mut self, mask: Value, a: Value, b: Value) -> Value {
        let t = self.b.func.dfg.value_type(a);
        if t.is_vector() {
            let le = MemFlagsData::new().with_endianness(Endianness::Little);
            let m = self.b.ins().bitcast(t, le, mask);
            self.b.ins().bitselect(m, a, b)
        } else {
            self.b.ins().select(mask, a, b)
        }
    }

    /// `x` where `x cc y` holds or `x` is NaN, else `other`: the rows'
    /// `if x >= y || x.is_nan() { x } else { other }` and its kin.
    fn keep_if(&mut self, cc: FloatCC, x: Value, y: Value, other: Value) -> Value {
        let holds = self.b.ins().fcmp(cc, x, y);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        let t = self.b.ins().bor(holds, nan);
        self.select(t, x, other)
    }

    /// A call of an element function (given the op first when `op` is
    /// there), once per lane for a vector.
    fn call(&mut self, f: FuncRef, op: Option<Value>, args: &[Value]) -> Value {
        let t = self.b.func.dfg.value_type(args[0]);
        if !t.is_vector() {
            let mut call_args: Vec<Value> = op.into_iter().collect();
            call_args.extend_from_slice(args);
            let call = self.b.ins().call(f, &call_args);
            return self.b.inst_results(call)[0];
        }
        let mut out = args[0];
        for lane in 0..t.lane_count() as u8 {
            let mut call_args: Vec<Value> = op.into_iter().collect();
            for &a in args {
                call_args.push(self.b.ins().extractlane(a, lane));
            }
            let call = self.b.ins().call(f, &call_args);
            let r = self.b.inst_results(call)[0];
            out = self.b.ins().insertlane(out, r, lane);
        }
        out
    }

    pub fn unary(&mut self, op: UnaryOp, x: Value, dtype: DType) -> Value {
        match op {
            UnaryOp::Neg {} => self.b.ins().fneg(x),
            UnaryOp::Abs {} => self.b.ins().fabs(x),
            UnaryOp::Sqrt {} => self.b.ins().sqrt(x),
            UnaryOp::Square {} => self.b.ins().fmul(x, x),
            UnaryOp::Reciprocal {} => {
                let one = self.constant(1.0, dtype, x);
                self.b.ins().fdiv(one, x)
            }
            UnaryOp::Rsqrt {} => {
                let (one, r) = (self.constant(1.0, dtype, x), self.b.ins().sqrt(x));
                self.b.ins().fdiv(one, r)
            }
            UnaryOp::Scale { c } => {
                let c = self.constant(c.0, dtype, x);
                self.b.ins().fmul(x, c)
            }
            UnaryOp::Shift { c } => {
                let c = self.constant(c.0, dtype, x);
                self.b.ins().fadd(x, c)
            }
            UnaryOp::Relu {} => {
                let zero = self.constant(0.0, dtype, x);
                self.keep_if(FloatCC::GreaterThan, x, zero, zero)
            }
            UnaryOp::Clamp { lo, hi } => {
                let (lo, hi) = (self.constant(lo.0, dtype, x), self.constant(hi.0, dtype, x));
                let x = self.keep_if(FloatCC::GreaterThanOrEqual, x, lo, lo);
                self.keep_if(FloatCC::LessThanOrEqual, x, hi, hi)
            }
            UnaryOp::Sign {} => {
                let (zero, one, minus) = (
                    self.constant(0.0, dtype, x),
                    self.constant(1.0, dtype, x),
                    self.constant(-1.0, dtype, x),
                );
                let neg = self.b.ins().fcmp(FloatCC::LessThan, x, zero);
                let low = self.select(neg, minus, zero);
                let pos = self.b.ins().fcmp(FloatCC::GreaterThan, x, zero);
                self.select(pos, one, low)
            }
            _ if DIRECT.contains(&op) => {
                let vector = self.b.func.dfg.value_type(x).is_vector();
                if vector && cfg!(target_arch = "x86_64") {
                    // The vector form, one call for every lane.
                    let f = self.calls[direct_call(op, dtype, Form::Vector).expect("direct")];
                    let call = self.b.ins().call(f, &[x]);
                    return self.b.inst_results(call)[0];
                }
                let f = self.calls[direct_call(op, dtype, Form::Element).expect("direct")];
                self.call(f, None, &[x])
            }
            _ => {
                self.code._unary.push(Box::new(op));
                let at = &**self.code._unary.last().expect("pushed") as *const UnaryOp;
                let at = self.b.ins().iconst(self.ptr, at as i64);
                let f = self.calls[if dtype == DType::F32 { 0 } else { 1 }];
                self.call(f, Some(at), &[x])
            }
        }
    }

    pub fn binary(&mut self, op: BinaryOp, a: Value, b: Value, dtype: DType) -> Value {
        match op {
            BinaryOp::Add => self.b.ins().fadd(a, b),
            BinaryOp::Sub => self.b.ins().fsub(a, b),
            BinaryOp::Mul => self.b.ins().fmul(a, b),
            BinaryOp::Div => self.b.ins().fdiv(a, b),
            // NaN in `a` propagates: the rows' `a >= b || a.is_nan()`.
            BinaryOp::Maximum => self.keep_if(FloatCC::GreaterThanOrEqual, a, b, b),
            BinaryOp::Minimum => self.keep_if(FloatCC::LessThanOrEqual, a, b, b),
            _ => {
                self.code._binary.push(Box::new(op));
                let at = &**self.code._binary.last().expect("pushed") as *const BinaryOp;
                let at = self.b.ins().iconst(self.ptr, at as i64);
                let f = self.calls[if dtype == DType::F32 { 2 } else { 3 }];
                self.call(f, Some(at), &[a, b])
            }
        }
    }
}

/// Whether a kernel's interleaved loop must keep the order it is written
/// in: its body is a chain long enough that one block fills the CPU's
/// reorder window (see [`MIN_ORDERED_CHAIN`]).
fn keeps_order(k: &Kernel) -> bool {
    interleaves(k) && k.chain_depth() >= MIN_ORDERED_CHAIN
}

/// Whether a kernel's innermost vector loop runs [`INTERLEAVE`] (or
/// [`INTERLEAVE_CALLING`]) blocks at a time: it has a vector loop, walks it
/// forwards and has no reduction that starts afresh per element (each
/// would need its own accumulators).
/// A value carried between iterations is read from the group's earlier
/// blocks: it is always computed before the piece that reads it (an
/// instruction's arguments come before it), so for every block first.
fn interleaves(k: &Kernel) -> bool {
    let Some(innermost) = k.dims.len().checked_sub(1) else {
        return false;
    };
    let per_element = k.instrs.iter().any(|(i, _)| match i {
        Instr::Reduce { operand, .. } => k.operands[*operand].strides[innermost] != 0,
        _ => false,
    });
    let descending = k.split.as_ref().is_some_and(|s| s.descending);
    // Lanes gathered one by one are independent loads already, and a
    // group of blocks of them runs out of registers (a gathered row is one
    // vector load, as any operand's).
    let lane_gathers = k.operands.iter().any(|o| {
        o.gather
            .is_some_and(|g| k.operands[g.by].strides[innermost] != 0)
    });
    simd_type(k).is_some() && !per_element && !descending && !lane_gathers
}

/// The vector type of a kernel's innermost loop: 128 bits of its one dtype,
/// when every operand steps through the innermost axis by 0 or 1 element
/// and no instruction changes the dtype (lanes would not line up).
fn simd_type(k: &Kernel) -> Option<Type> {
    let dtype = k.instrs.first()?.1;
    let uniform = k
        .instrs
        .iter()
        .all(|(i, d)| *d == dtype && !matches!(i, Instr::Cast(..)))
        && (0..k.operands.len()).all(|o| k.operands[o].dtype == dtype || k.is_index(o));
    let unit = k
        .operands
        .iter()
        .all(|o| matches!(o.strides.last(), Some(0) | Some(1)));
    let vector = match dtype {
        DType::F32 => types::F32X4,
        DType::F64 => types::F64X2,
        other => crate::storage::refused(other),
    };
    (uniform && unit && !k.dims.is_empty()).then_some(vector)
}
