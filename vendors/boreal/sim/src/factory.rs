//! The Boreal bank behind the batteries of a site whose vendor is `boreal`.

use crate::bank::{BankConfig, BorealBank};
use crate::driver::BankHandle;
use crate::protocol::VENDOR;
use bmsfw_can::CanInterface;
use bmsfw_sim::battery::Epoch;
use bmsfw_sim::registry::{BmsFactory, BmsRegistry, SpawnedBms};
use bmsfw_sim::site::{SiteBattery, StartError};
use std::sync::Arc;

/// Adjusts the configuration of one battery's bank.
type Configure = dyn Fn(&SiteBattery, &mut BankConfig) + Send + Sync;

/// Starts a [`BorealBank`] for a site's battery: its product code and firmware bytes
/// come from the site description (`product_code`, `firmware`), its node count from
/// `modules` (nodes 1 to `modules`), the rest from [`BankConfig::new`] adjusted by
/// `configure`.
#[derive(Clone)]
pub struct BorealFactory {
    configure: Arc<Configure>,
}

impl std::fmt::Debug for BorealFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BorealFactory").finish_non_exhaustive()
    }
}

impl Default for BorealFactory {
    fn default() -> BorealFactory {
        BorealFactory::new(|_, _| {})
    }
}

impl BorealFactory {
    /// A factory that adjusts each bank's configuration with `configure` (other node
    /// versions, an older bootloader, other timings).
    pub fn new(
        configure: impl Fn(&SiteBattery, &mut BankConfig) + Send + Sync + 'static,
    ) -> BorealFactory {
        BorealFactory {
            configure: Arc::new(configure),
        }
    }
}

impl BmsFactory for BorealFactory {
    fn spawn(
        &self,
        battery: &SiteBattery,
        iface: Arc<dyn CanInterface>,
        epoch: Epoch,
    ) -> Result<SpawnedBms, StartError> {
        let identity = &battery.config.identity;
        let count = u8::try_from(battery.config.modules)
            .map_err(|_| StartError::new(battery, "a Boreal bank has at most 16 nodes"))?;
        let mut config = BankConfig::new(identity.product_code, identity.firmware, count);
        (self.configure)(battery, &mut config);
        let model = BorealBank::new(config, battery.config.clone(), epoch.now())
            .map_err(|e| StartError::new(battery, e.to_string()))?;
        let (handle, task) = BankHandle::spawn(battery.name.clone(), model, epoch, iface);
        let handle = Arc::new(handle);
        Ok(SpawnedBms {
            control: handle.clone(),
            vendor: Some(handle),
            task,
        })
    }
}

/// Registers the Boreal bank under the vendor name `boreal`.
pub fn register(registry: &mut BmsRegistry) {
    registry.register(VENDOR, Arc::new(BorealFactory::default()));
}
