//! `allocwatch import`: accounting files into the ledger, each in one transaction; rejected
//! lines named (file, line, field, reason) and the rest imported.

use super::{now, open_store, Failure, Globals};
use crate::config::FileKind;
use crate::pull::files::import_file;
use std::path::PathBuf;

/// `import`'s options.
#[derive(clap::Args)]
pub struct Args {
    /// Centre the files come from.
    #[arg(long)]
    centre: String,
    /// File format.
    #[arg(long, value_enum)]
    format: FileKind,
    /// Columns of a header-less sacct dump (sacct --format list), or `xdmod`.
    #[arg(long)]
    fields: Option<String>,
    /// Files (`.gz` is decompressed).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(g: &Globals, a: Args) -> Result<(), Failure> {
    let (config, _) = g.load()?;
    let c = config.centre(&a.centre)?;
    let mut store = open_store(&config)?;
    let mut rejected_total = 0;
    // Files in which no line was readable: nothing but rejections is not an import.
    let mut unreadable = Vec::new();
    for f in &a.files {
        let started = std::time::Instant::now();
        let imp = import_file(&mut store, c, f, a.format, a.fields.as_deref(), now())?;
        let s = &imp.stats;
        rejected_total += s.rejected;
        for r in &imp.rejections {
            eprintln!("rejected: {r}");
        }
        if s.rejected as usize > imp.rejections.len() {
            eprintln!("… and {} more rejected lines", s.rejected as usize - imp.rejections.len());
        }
        for (cluster, n) in &s.unknown_clusters {
            eprintln!("warning: {n} records of cluster {cluster:?}, which centre {} does not list (charged to it anyway)", a.centre);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{}: {} records ({} new, {} replaced, {} unchanged), {} rejected lines, {} steps skipped, {} never started; {:.2} s ({:.0} records/s)",
            f.display(),
            s.records,
            s.inserted,
            s.replaced,
            s.unchanged,
            s.rejected,
            s.steps,
            s.not_started,
            secs,
            s.records as f64 / secs.max(1e-9)
        );
        if s.rejected > 0 && s.records == 0 && s.steps == 0 && s.not_started == 0 {
            unreadable.push(f.display().to_string());
        }
    }
    if !unreadable.is_empty() {
        return Err(Failure::Runtime(format!(
            "{}: no line could be read ({rejected_total} lines rejected in all, nothing imported from {}): is it an accounting file of centre {} in this format?",
            unreadable.join(", "),
            if unreadable.len() == 1 { "it" } else { "them" },
            a.centre
        )));
    }
    if rejected_total > 0 {
        eprintln!("{rejected_total} lines rejected in all; the rest was imported");
    }
    Ok(())
}
