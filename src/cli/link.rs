//! `allocwatch link`: a signed, read-only link to one project's page, for a researcher (the
//! same link every researcher e-mail carries).

use super::{Failure, Globals};

/// `link`'s options.
#[derive(clap::Args)]
pub struct Args {
    /// The project (as in the allocation files).
    #[arg(long)]
    project: String,
    /// Lifetime in days (default: `[links] lifetime_days`, 35).
    #[arg(long)]
    days: Option<u32>,
}

pub fn run(g: &Globals, a: Args) -> Result<(), Failure> {
    let (config, grants) = g.load()?;
    let maker = config
        .link_maker()
        .map_err(|e| Failure::usage(format!("{}: {e}", config.path.display())))?
        .ok_or_else(|| Failure::usage(format!("{}: no [links] section: signed links are not configured (keys, and [http] public_url)", config.path.display())))?;
    if !grants.allocations.iter().any(|al| al.project == a.project) {
        return Err(Failure::usage(format!("no allocation of project {:?} in the allocation files: no link made", a.project)));
    }
    if a.days == Some(0) || a.days.is_some_and(|d| d > 366) {
        return Err(Failure::usage("--days: between 1 and 366"));
    }
    let link = maker.link(&a.project, super::now(), a.days);
    println!("{}", link.url);
    eprintln!("valid until {} (opens project {}'s page and JSON only, read-only)", crate::domain::time::rfc3339(link.expires_s), a.project);
    Ok(())
}
