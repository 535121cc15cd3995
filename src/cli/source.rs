//! Where a command listens: SocketCAN interfaces, or a simulated site run in real time.

use anyhow::Context;
use bmsfw_can::{CanInterface, SocketCanInterface};
#[cfg(feature = "sim")]
use bmsfw_sim::registry::BmsRegistry;
#[cfg(feature = "sim")]
use bmsfw_sim::site::{RunningSite, SiteDescription};
#[cfg(feature = "sim")]
use std::path::PathBuf;
use std::sync::Arc;

/// `--bus can0 [--bus can1]` or `--sim SITE.toml`.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// SocketCAN interface to listen on (repeat for several buses)
    #[arg(long = "bus", value_name = "IFACE")]
    pub buses: Vec<String>,
    /// Simulated site to build and run in real time (for example config/demo.toml)
    #[cfg(feature = "sim")]
    #[arg(long, value_name = "SITE")]
    pub sim: Option<PathBuf>,
}

/// The interfaces opened for a command, and the simulated site behind them, if any.
pub struct Opened {
    /// One interface per bus.
    pub interfaces: Vec<Arc<dyn CanInterface>>,
    /// The running site when `--sim` was given; shut it down when done.
    #[cfg(feature = "sim")]
    pub site: Option<RunningSite>,
}

impl Source {
    /// Opens every bus; on a simulated site, attaches a node named `node` to each.
    /// Must run inside a Tokio runtime.
    #[cfg_attr(not(feature = "sim"), allow(unused_variables))]
    pub fn open(&self, node: &str) -> anyhow::Result<Opened> {
        #[cfg(feature = "sim")]
        if let Some(path) = &self.sim {
            let site = SiteDescription::load(path)?
                .start_with(&vendor_models())
                .with_context(|| format!("starting the site of {}", path.display()))?;
            let interfaces = site
                .buses()
                .iter()
                .map(|bus| Arc::new(bus.attach(node)) as Arc<dyn CanInterface>)
                .collect();
            return Ok(Opened {
                interfaces,
                site: Some(site),
            });
        }
        let interfaces = self
            .buses
            .iter()
            .map(|name| {
                SocketCanInterface::open(name)
                    .map(|i| Arc::new(i) as Arc<dyn CanInterface>)
                    .with_context(|| format!("opening SocketCAN interface {name}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Opened {
            interfaces,
            #[cfg(feature = "sim")]
            site: None,
        })
    }
}

/// The BMS models of the vendors whose simulation ships with bmsfw, by the `vendor` of
/// site files; every other vendor's batteries run the generic BMS-Can model.
#[cfg(feature = "sim")]
pub fn vendor_models() -> BmsRegistry {
    let mut registry = BmsRegistry::new();
    aurora_sim::register(&mut registry);
    coral_sim::register(&mut registry);
    boreal_sim::register(&mut registry);
    template_sim::register(&mut registry);
    registry
}

impl Opened {
    /// Stops the simulated batteries, if any.
    pub async fn close(self) {
        drop(self.interfaces);
        #[cfg(feature = "sim")]
        if let Some(site) = self.site {
            for (battery, exit) in site.shutdown().await {
                if let Err(e) = exit {
                    tracing::warn!(%battery, error = %e, "simulated battery ended with an error");
                }
            }
        }
    }
}
