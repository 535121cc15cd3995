//! `bmsfw update --sim SITE --battery NAME`: the simulated site the battery is in. A
//! build without the simulator has no `--sim`, and these types have no values.

use super::{Progress, Running as Parts, Stop, UpdateArgs, Wanted};
use bmsfw_core::engine::EngineBuilder;

#[cfg(feature = "sim")]
mod with {
    use super::*;
    use crate::cli::record::Recorder;
    use crate::cli::source::vendor_models;
    use crate::cli::update::{OrStop, STOP_LIMIT};
    use anyhow::{Context, anyhow};
    use std::path::Path;
    use std::sync::Arc;

    /// The site file of `--sim`.
    pub type Description = bmsfw_sim::site::SiteDescription;
    /// The site running.
    pub type Running = bmsfw_sim::site::RunningSite;

    /// Whether `--sim` was given.
    pub fn given(args: &UpdateArgs) -> bool {
        args.sim.is_some()
    }

    /// Reads the site file of `--sim`, if given.
    pub fn load(args: &UpdateArgs) -> Result<Option<Description>, Stop> {
        args.sim
            .as_deref()
            .map(|path| Description::load(path).bad_input())
            .transpose()
    }

    /// The battery `--battery` names in `site`, by its serial number.
    pub fn wanted(args: &UpdateArgs, site: &Description) -> Result<Wanted, Stop> {
        let path = args.sim.as_deref().unwrap_or(Path::new(""));
        let Some(name) = &args.battery else {
            return Err(anyhow!("give --battery NAME with --sim {}", path.display())).bad_input();
        };
        let batteries = site.batteries();
        let Some(battery) = batteries.iter().find(|b| b.name == *name) else {
            let names: Vec<&str> = batteries.iter().map(|b| b.name.as_str()).collect();
            return Err(anyhow!(
                "the site {} has no battery named {name:?}; it has {}",
                path.display(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ))
            .bad_input();
        };
        let Some(serial) = battery.config.identity.serial.clone() else {
            return Err(anyhow!(
                "battery {name} of {} has no serial: the GX names the battery it updates by \
                 its serial number (0x380/0x381); add `serial = \"...\"` to it",
                path.display()
            ))
            .bad_input();
        };
        Ok(Wanted::Serial {
            name: name.clone(),
            serial,
        })
    }

    /// Starts `site`, puts the GX on each of its buses, and records them with `--record`.
    pub fn start(
        args: &UpdateArgs,
        site: Description,
        mut builder: EngineBuilder,
        parts: &mut Parts,
    ) -> Result<EngineBuilder, Stop> {
        let path = args.sim.as_deref().unwrap_or(Path::new(""));
        let site = site
            .start_with(&vendor_models())
            .with_context(|| format!("starting the simulated site of {}", path.display()))
            .bad_input()?;
        for bus in site.buses() {
            builder = builder.bus(Arc::new(bus.attach("gx")));
        }
        if let Some(log) = &args.record {
            parts.recorder = Some(Recorder::start(log, site.buses(), &[]).bad_input()?);
        }
        parts.site = Some(site);
        Ok(builder)
    }

    /// Stops the site's batteries.
    pub async fn stop(site: Running, progress: &Progress) {
        match tokio::time::timeout(STOP_LIMIT, site.shutdown()).await {
            Ok(exits) => {
                for (battery, exit) in exits {
                    if let Err(e) = exit {
                        tracing::warn!(%battery, error = %e, "simulated battery ended with an error");
                    }
                }
            }
            Err(_) => progress.line("the simulated site did not stop in time"),
        }
    }
}

#[cfg(not(feature = "sim"))]
mod without {
    use super::*;

    /// No site file in a build without the simulator.
    pub enum Description {}
    /// No site running in a build without the simulator.
    pub enum Running {}

    pub fn given(_: &UpdateArgs) -> bool {
        false
    }

    pub fn load(_: &UpdateArgs) -> Result<Option<Description>, Stop> {
        Ok(None)
    }

    pub fn wanted(_: &UpdateArgs, site: &Description) -> Result<Wanted, Stop> {
        match *site {}
    }

    pub fn start(
        _: &UpdateArgs,
        site: Description,
        _: EngineBuilder,
        _: &mut Parts,
    ) -> Result<EngineBuilder, Stop> {
        match site {}
    }

    pub async fn stop(site: Running, _: &Progress) {
        match site {}
    }
}

#[cfg(feature = "sim")]
pub use with::*;
#[cfg(not(feature = "sim"))]
pub use without::*;
