//! The Acme BMS behind the batteries of a site whose vendor is `template`.

use crate::bms::{TemplateBms, TemplateConfig};
use crate::driver::TemplateHandle;
use bmsfw_can::CanInterface;
use bmsfw_sim::battery::Epoch;
use bmsfw_sim::registry::{BmsFactory, BmsRegistry, SpawnedBms};
use bmsfw_sim::site::{SiteBattery, StartError};
use std::sync::Arc;

/// The `vendor` of site files whose batteries this model runs.
pub const VENDOR: &str = "template";

/// Starts a [`TemplateBms`] for a site's battery: its product code and firmware bytes
/// come from the site description (`product_code`, `firmware`), the rest from
/// [`TemplateConfig::new`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TemplateFactory;

impl BmsFactory for TemplateFactory {
    fn spawn(
        &self,
        battery: &SiteBattery,
        iface: Arc<dyn CanInterface>,
        epoch: Epoch,
    ) -> Result<SpawnedBms, StartError> {
        let identity = &battery.config.identity;
        let config = TemplateConfig::new(identity.product_code, identity.firmware);
        let model = TemplateBms::new(config, battery.config.clone(), epoch.now())
            .map_err(|e| StartError::new(battery, e.to_string()))?;
        let (handle, task) = TemplateHandle::spawn(battery.name.clone(), model, epoch, iface);
        let handle = Arc::new(handle);
        Ok(SpawnedBms {
            control: handle.clone(),
            vendor: Some(handle),
            task,
        })
    }
}

/// Registers the Acme BMS under the vendor name `template`.
pub fn register(registry: &mut BmsRegistry) {
    registry.register(VENDOR, Arc::new(TemplateFactory));
}
