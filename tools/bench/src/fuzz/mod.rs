//! `starling-bench fuzz`: hostile bytes into every decoder that takes them
//! from the network or the disk, through the receivers' own code.
//!
//! Each decoder gets N inputs mutated from captured real encodings
//! (`seeds`, `mutate`); every input runs under `catch_unwind`, so a panic
//! is counted and its input printed instead of ending the run. The report
//! is a Markdown table: inputs, rate, accepted and refused, panics (which
//! must be 0; the command fails otherwise) and memory, to show it stays
//! bounded over millions of inputs.

mod history_file;
mod mutate;
mod query;
mod seeds;
mod targets;

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::measure;

/// Feed hostile inputs to every decoder of network and disk bytes: the
/// sealed envelope, gossip datagrams, push-pull streams, pushed rows, sync
/// requests and answers, annotations, probe echoes, reports and
/// assignments, `/v1/history` query strings, and history database files.
#[derive(Clone, Debug, clap::Args)]
pub struct FuzzArgs {
    /// Inputs per network decoder.
    #[arg(long, default_value_t = 10_000_000)]
    pub inputs: u64,

    /// Inputs for `history-file`, which writes and opens a SQLite file
    /// for each (a few milliseconds an input), hence its own, smaller
    /// default.
    #[arg(long, default_value_t = 20_000)]
    pub file_inputs: u64,

    /// Fuzz only this decoder (repeat for several); all by default.
    #[arg(long = "decoder", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(targets::names()))]
    pub decoders: Vec<String>,

    /// Seed of the mutations: the same seed gives the same inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error("capturing the seed inputs: {0}")]
    Seeds(String),
    #[error("{0} decoder(s) panicked; the report names the inputs")]
    Panicked(usize),
}

/// One decoder as the fuzzer drives it.
pub trait Target {
    fn name(&self) -> &'static str;
    /// The next input, into `out`: the exact bytes the receiver gets.
    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>);
    /// Feeds one input to the receiver; whether it was accepted.
    fn feed(&mut self, input: &[u8]) -> bool;
    /// Starts the receiver's state afresh (after a panic left it halfway).
    fn reset(&mut self) {}
}

/// What one decoder's run came to.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub decoder: &'static str,
    pub inputs: u64,
    pub elapsed: Duration,
    pub accepted: u64,
    pub refused: u64,
    pub panics: u64,
    /// The first panic's message and input.
    pub first_panic: Option<(String, Vec<u8>)>,
    /// Resident memory after a tenth of the inputs, and the peak over the
    /// run (KiB): equal-ish numbers mean memory stayed bounded.
    pub rss_at_tenth_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
}

thread_local! {
    /// Set while an input runs: the panic hook keeps the message here
    /// instead of printing it, once per input.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static FUZZING: RefCell<bool> = const { RefCell::new(false) };
}

/// Panics inside a fuzzed input are recorded, not printed; any other
/// panic goes to the hook that was there before.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if FUZZING.with(|f| *f.borrow()) {
                PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `inputs` inputs through `target`.
pub fn fuzz(target: &mut dyn Target, inputs: u64, seed: u64) -> Outcome {
    install_panic_hook();
    measure::reset_peak_rss();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut input = Vec::new();
    let mut outcome = Outcome {
        decoder: target.name(),
        inputs,
        elapsed: Duration::ZERO,
        accepted: 0,
        refused: 0,
        panics: 0,
        first_panic: None,
        rss_at_tenth_kib: None,
        peak_rss_kib: None,
    };
    let started = Instant::now();
    for n in 0..inputs {
        if n == inputs / 10 {
            outcome.rss_at_tenth_kib = measure::self_status_kib("VmRSS:");
        }
        target.input(&mut rng, &mut input);
        FUZZING.with(|f| *f.borrow_mut() = true);
        let fed = catch_unwind(AssertUnwindSafe(|| target.feed(&input)));
        FUZZING.with(|f| *f.borrow_mut() = false);
        match fed {
            Ok(true) => outcome.accepted += 1,
            Ok(false) => outcome.refused += 1,
            Err(_) => {
                outcome.panics += 1;
                let message = PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default();
                eprintln!(
                    "fuzz: {} panicked on input {n} ({message}); input: {}",
                    target.name(),
                    hex(&input)
                );
                outcome.first_panic.get_or_insert((message, input.clone()));
                target.reset();
            }
        }
    }
    outcome.elapsed = started.elapsed();
    outcome.peak_rss_kib = measure::self_status_kib("VmHWM:");
    outcome
}

/// `starling-bench fuzz`: every decoder asked for, then the table.
pub fn run(args: FuzzArgs) -> Result<(), super::BenchError> {
    let wanted = |name: &str| args.decoders.is_empty() || args.decoders.iter().any(|d| d == name);
    eprintln!("fuzz: capturing seed inputs from the real encoders");
    let seeds = seeds::Seeds::capture().map_err(super::BenchError::Fuzz)?;
    let mut outcomes = Vec::new();
    let mut decoders = targets::all(&seeds).map_err(super::BenchError::Fuzz)?;
    if wanted(history_file::NAME) {
        let file =
            history_file::HistoryFile::new(&seeds.events).map_err(super::BenchError::Fuzz)?;
        decoders.push(Box::new(file));
    }
    for target in decoders.iter_mut().filter(|t| wanted(t.name())) {
        let inputs = if target.name() == history_file::NAME {
            args.file_inputs
        } else {
            args.inputs
        };
        eprintln!("fuzz: {}: {inputs} inputs", target.name());
        let outcome = fuzz(target.as_mut(), inputs, args.seed);
        // The row as it will be in the table, should a long run be cut.
        eprintln!("fuzz: {}", row(&outcome).trim_end());
        outcomes.push(outcome);
    }
    println!("{}", render(&outcomes, &args));
    let panicked = outcomes.iter().filter(|o| o.panics > 0).count();
    if panicked > 0 {
        return Err(super::BenchError::Fuzz(FuzzError::Panicked(panicked)));
    }
    Ok(())
}

fn rate(outcome: &Outcome) -> f64 {
    outcome.inputs as f64 / outcome.elapsed.as_secs_f64().max(1e-9)
}

/// The report: a Markdown table, then any panic's input in hex.
pub fn render(outcomes: &[Outcome], args: &FuzzArgs) -> String {
    let mut out = format!(
        "# starling-bench fuzz\n\nCommand: `{}` ({} build, seed {}).\n\n\
         | decoder | inputs | inputs/s | accepted | refused | panics | RSS after 10% (MiB) | peak RSS (MiB) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        super::command_line(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        args.seed,
    );
    for o in outcomes {
        out.push_str(&row(o));
    }
    let total: Duration = outcomes.iter().map(|o| o.elapsed).sum();
    out.push_str(&format!("\nTotal: {:.0} s.\n", total.as_secs_f64()));
    for o in outcomes {
        if let Some((message, input)) = &o.first_panic {
            out.push_str(&format!(
                "\n{} panicked ({} inputs), first: {message}\n\ninput ({} bytes): `{}`\n",
                o.decoder,
                o.panics,
                input.len(),
                hex(input)
            ));
        }
    }
    out
}

fn row(o: &Outcome) -> String {
    let mib =
        |kib: Option<u64>| kib.map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
    format!(
        "| {} | {} | {:.0} | {} | {} | {} | {} | {} |\n",
        o.decoder,
        o.inputs,
        rate(o),
        o.accepted,
        o.refused,
        o.panics,
        mib(o.rss_at_tenth_kib),
        mib(o.peak_rss_kib),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs per decoder in the test suite: enough to reach past the
    /// first checks of each, within the CI budget for a debug build.
    const SHORT: u64 = 3_000;
    const SHORT_FILES: u64 = 150;

    #[test]
    fn every_decoder_takes_real_inputs_refuses_hostile_ones_and_never_panics() {
        let seeds = seeds::Seeds::capture().expect("seeds");
        let mut decoders = targets::all(&seeds).expect("decoders");
        decoders.push(Box::new(
            history_file::HistoryFile::new(&seeds.events).expect("history seeds"),
        ));
        assert_eq!(
            decoders.iter().map(|d| d.name()).collect::<Vec<_>>(),
            targets::names()
        );
        let mut failures = Vec::new();
        for target in &mut decoders {
            let inputs = if target.name() == history_file::NAME {
                SHORT_FILES
            } else {
                SHORT
            };
            let outcome = fuzz(target.as_mut(), inputs, 20261203);
            eprintln!(
                "{}: {} accepted, {} refused, {} panics in {:?}",
                outcome.decoder, outcome.accepted, outcome.refused, outcome.panics, outcome.elapsed
            );
            if outcome.panics > 0 || outcome.accepted == 0 || outcome.refused == 0 {
                failures.push(outcome);
            }
        }
        assert!(
            failures.is_empty(),
            "{}",
            render(
                &failures,
                &FuzzArgs {
                    inputs: SHORT,
                    file_inputs: SHORT_FILES,
                    decoders: Vec::new(),
                    seed: 20261203,
                }
            )
        );
    }
}
