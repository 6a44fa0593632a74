//! `chainrule-gradbench`: chainrule as a tool of GradBench, the public
//! benchmark of AD tools (`gradbench/gradbench`). It speaks GradBench's
//! protocol on stdin/stdout (one JSON message per line, answered in lock
//! step) and implements each eval's module with chainrule's own AD; no
//! derivative is written by hand.
//!
//!     gradbench run --eval "… evals/gmm/run.py" --tool "chainrule-gradbench [OPTIONS]"
//!
//! Like GradBench's other tools it runs on one thread unless given
//! `--multithreaded` (then on every core). `--graph-loops` runs
//! `particle`'s flight through the graph's `while_loop` instead of an
//! eager loop.

mod evals;
mod protocol;

/// Tapes of many small nodes are allocation-heavy (lstm, ba, ode); glibc's
/// allocator spends much of such a run consolidating free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc (v3) asks the kernel to back its arenas with transparent huge
/// pages. A fresh huge page is zeroed whole on first touch, and on this
/// benchmark machine (a VM) that took ~10 ms per 2 MB: ht's first
/// Jacobian call at c=51200 took 3.2 s with them and 0.36 s without, its
/// second at c=3200 (the median of GradBench's three runs) 18.8 → 3.2 ms,
/// steady calls unchanged. So the process opts out; on a kernel without
/// the switch nothing changes.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integers and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// mimalloc hands freed memory back to the kernel 10 ms later, so every
/// call of a large eval faults its buffers in afresh: ba11's Jacobian
/// (its CSR arrays alone are 337 MB a call) spent most of its time
/// zeroing fresh pages. With `MIMALLOC_PURGE_DELAY=-1` freed pages stay
/// mapped for the next call, as glibc's allocator keeps them once a size
/// recurs (the allocator the C++ and Python tools run on). mimalloc reads
/// its options when the process loads, so the tool runs itself again with
/// the setting (an explicit one is kept); if that fails it goes on as it
/// is.
fn keep_freed_pages() {
    #[cfg(unix)]
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        use std::os::unix::process::CommandExt;
        if let Ok(exe) = std::env::current_exe() {
            let failed = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("MIMALLOC_PURGE_DELAY", "-1")
                .exec();
            eprintln!("chainrule-gradbench: cannot rerun with freed pages kept: {failed}");
        }
    }
}

fn main() {
    keep_freed_pages();
    no_transparent_huge_pages();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut multithreaded, mut options) = (false, protocol::Options::default());
    for arg in &args {
        match arg.as_str() {
            "--multithreaded" => multithreaded = true,
            "--graph-loops" => options.graph_loops = true,
            _ => {
                eprintln!("usage: chainrule-gradbench [--multithreaded] [--graph-loops]");
                std::process::exit(2);
            }
        }
    }
    if !multithreaded {
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build_global()
        {
            eprintln!("chainrule-gradbench: cannot set up one thread: {e}");
            std::process::exit(1);
        }
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    if let Err(e) = protocol::serve(stdin.lock(), stdout.lock(), options) {
        eprintln!("chainrule-gradbench: {e}");
        std::process::exit(1);
    }
}
