//! The Coral master behind the batteries of a site whose vendor is `coral`.

use crate::bms::{CoralBms, CoralConfig};
use crate::driver::CoralHandle;
use crate::protocol::VENDOR;
use bmsfw_can::CanInterface;
use bmsfw_sim::battery::Epoch;
use bmsfw_sim::registry::{BmsFactory, BmsRegistry, SpawnedBms};
use bmsfw_sim::site::{SiteBattery, StartError};
use std::sync::Arc;

/// Adjusts the configuration of one battery's master.
type Configure = dyn Fn(&SiteBattery, &mut CoralConfig) + Send + Sync;

/// Starts a [`CoralBms`] for a site's battery: its product code comes from the site
/// description, its firmware from `firmware` (0x35F bytes 2-3, `0xMMmm` little-endian;
/// build 0), its module count from `modules`; the rest from [`CoralConfig::new`] adjusted
/// by `configure`.
#[derive(Clone)]
pub struct CoralFactory {
    configure: Arc<Configure>,
}

impl std::fmt::Debug for CoralFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoralFactory").finish_non_exhaustive()
    }
}

impl Default for CoralFactory {
    fn default() -> CoralFactory {
        CoralFactory::new(|_, _| {})
    }
}

impl CoralFactory {
    /// A factory that adjusts each master's configuration with `configure`.
    pub fn new(
        configure: impl Fn(&SiteBattery, &mut CoralConfig) + Send + Sync + 'static,
    ) -> CoralFactory {
        CoralFactory {
            configure: Arc::new(configure),
        }
    }
}

impl BmsFactory for CoralFactory {
    fn spawn(
        &self,
        battery: &SiteBattery,
        iface: Arc<dyn CanInterface>,
        epoch: Epoch,
    ) -> Result<SpawnedBms, StartError> {
        let identity = &battery.config.identity;
        let [minor, major] = identity.firmware;
        let mut config = CoralConfig::new(
            identity.product_code,
            [major, minor, 0],
            usize::from(battery.config.modules),
        );
        (self.configure)(battery, &mut config);
        let model = CoralBms::new(config, battery.config.clone(), epoch.now())
            .map_err(|e| StartError::new(battery, e.to_string()))?;
        let (handle, task) = CoralHandle::spawn(battery.name.clone(), model, epoch, iface);
        let handle = Arc::new(handle);
        Ok(SpawnedBms {
            control: handle.clone(),
            vendor: Some(handle),
            task,
        })
    }
}

/// Registers the Coral master under the vendor name `coral`.
pub fn register(registry: &mut BmsRegistry) {
    registry.register(VENDOR, Arc::new(CoralFactory::default()));
}
