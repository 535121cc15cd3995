//! The Aurora BMS behind the batteries of a site whose vendor is `aurora`.

use crate::bms::{AuroraBms, AuroraConfig};
use crate::driver::AuroraHandle;
use crate::protocol::VENDOR;
use bmsfw_can::CanInterface;
use bmsfw_sim::battery::Epoch;
use bmsfw_sim::registry::{BmsFactory, BmsRegistry, SpawnedBms};
use bmsfw_sim::site::{SiteBattery, StartError};
use std::sync::Arc;

/// Adjusts the configuration of one battery's BMS.
type Configure = dyn Fn(&SiteBattery, &mut AuroraConfig) + Send + Sync;

/// Starts an [`AuroraBms`] for a site's battery: its product code and firmware bytes
/// come from the site description (`product_code`, `firmware`), the rest from
/// [`AuroraConfig::new`] adjusted by `configure`.
#[derive(Clone)]
pub struct AuroraFactory {
    configure: Arc<Configure>,
}

impl std::fmt::Debug for AuroraFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuroraFactory").finish_non_exhaustive()
    }
}

impl Default for AuroraFactory {
    fn default() -> AuroraFactory {
        AuroraFactory::new(|_, _| {})
    }
}

impl AuroraFactory {
    /// A factory that adjusts each battery's configuration with `configure` (an older
    /// bootloader, other timings).
    pub fn new(
        configure: impl Fn(&SiteBattery, &mut AuroraConfig) + Send + Sync + 'static,
    ) -> AuroraFactory {
        AuroraFactory {
            configure: Arc::new(configure),
        }
    }
}

impl BmsFactory for AuroraFactory {
    fn spawn(
        &self,
        battery: &SiteBattery,
        iface: Arc<dyn CanInterface>,
        epoch: Epoch,
    ) -> Result<SpawnedBms, StartError> {
        let identity = &battery.config.identity;
        let mut config = AuroraConfig::new(identity.product_code, identity.firmware);
        (self.configure)(battery, &mut config);
        let model = AuroraBms::new(config, battery.config.clone(), epoch.now())
            .map_err(|e| StartError::new(battery, e.to_string()))?;
        let (handle, task) = AuroraHandle::spawn(battery.name.clone(), model, epoch, iface);
        let handle = Arc::new(handle);
        Ok(SpawnedBms {
            control: handle.clone(),
            vendor: Some(handle),
            task,
        })
    }
}

/// Registers the Aurora BMS under the vendor name `aurora`.
pub fn register(registry: &mut BmsRegistry) {
    registry.register(VENDOR, Arc::new(AuroraFactory::default()));
}
