//! Which BMS model runs each battery of a site: a registry keyed by the `vendor` of the
//! site description, used by [`SiteDescription::start_with`].
//!
//! The simulator knows plain BMS-Can batteries only. A vendor's simulation crate (its
//! bootloader, its flash slots) implements [`BmsFactory`] and the binary registers it
//! under the vendor's name, so that `vendor = "aurora"` in `demo.toml` gets the aurora
//! BMS while this crate never names a vendor. Vendors without a registered factory get
//! [`PlainBms`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bmsfw_sim::registry::BmsRegistry;
//! use bmsfw_sim::site::SiteDescription;
//!
//! let site = SiteDescription::parse(
//!     r#"
//! [[bus]]
//! name = "sim0"
//! bitrate = 500000
//! [[bus.battery]]
//! name = "house"
//! vendor = "voltara"
//! manufacturer = "VOLTARA"
//! bms_name = "VX-48"
//! product_code = 0x0B17
//! firmware = [4, 15]
//! capacity_ah = 300
//! soc = 70
//! "#,
//!     "<doc>",
//! )
//! .unwrap();
//! let running = site.start_with(&BmsRegistry::new()).unwrap();
//! assert_eq!(running.battery("house").unwrap().control().snapshot().soc, 70.0);
//! # }
//! ```
//!
//! [`SiteDescription::start_with`]: crate::site::SiteDescription::start_with

use crate::battery::{BatteryControl, BatteryHandle, BatteryModel, DriverExit, Epoch};
use crate::site::{SiteBattery, StartError};
use bmsfw_can::{CanError, CanInterface};
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A vendor model's own controls (its faults, its flash slots), handed out as `Any` so
/// that only code that knows the vendor downcasts them.
pub type VendorControls = Arc<dyn Any + Send + Sync>;

/// A BMS a factory started.
pub struct SpawnedBms {
    /// The battery's controls every model offers.
    pub control: Arc<dyn BatteryControl>,
    /// The vendor model's own controls, when it has any.
    pub vendor: Option<VendorControls>,
    /// The task running the BMS on its interface.
    pub task: JoinHandle<Result<DriverExit, CanError>>,
}

impl fmt::Debug for SpawnedBms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnedBms")
            .field("battery", &self.control.name())
            .field("vendor_controls", &self.vendor.is_some())
            .finish_non_exhaustive()
    }
}

/// Starts the simulated BMS of one battery of a site.
pub trait BmsFactory: Send + Sync {
    /// Builds the BMS of `battery` and runs it on `iface` (its node on the battery's bus)
    /// in a new task, its timestamps counting from `epoch`. Needs a Tokio runtime.
    fn spawn(
        &self,
        battery: &SiteBattery,
        iface: Arc<dyn CanInterface>,
        epoch: Epoch,
    ) -> Result<SpawnedBms, StartError>;
}

/// The BMS-Can battery of [`BatteryModel`]: telemetry only, no bootloader.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainBms;

impl BmsFactory for PlainBms {
    fn spawn(
        &self,
        battery: &SiteBattery,
        iface: Arc<dyn CanInterface>,
        epoch: Epoch,
    ) -> Result<SpawnedBms, StartError> {
        let model = BatteryModel::new(battery.config.clone(), epoch.now())
            .map_err(|e| StartError::new(battery, e.to_string()))?;
        let (handle, task) = BatteryHandle::spawn(battery.name.clone(), model, epoch, iface);
        Ok(SpawnedBms {
            control: Arc::new(handle),
            vendor: None,
            task,
        })
    }
}

/// The factories of a simulated site, by vendor.
#[derive(Clone)]
pub struct BmsRegistry {
    factories: BTreeMap<String, Arc<dyn BmsFactory>>,
    fallback: Arc<dyn BmsFactory>,
}

impl fmt::Debug for BmsRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BmsRegistry")
            .field("vendors", &self.factories.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for BmsRegistry {
    fn default() -> BmsRegistry {
        BmsRegistry::new()
    }
}

impl BmsRegistry {
    /// A registry that runs every vendor's batteries as [`PlainBms`].
    pub fn new() -> BmsRegistry {
        BmsRegistry {
            factories: BTreeMap::new(),
            fallback: Arc::new(PlainBms),
        }
    }

    /// Runs batteries whose `vendor` is `vendor` with `factory` (replacing an earlier
    /// registration of that vendor).
    pub fn register(&mut self, vendor: impl Into<String>, factory: Arc<dyn BmsFactory>) {
        self.factories.insert(vendor.into(), factory);
    }

    /// The vendors with a factory of their own, in order.
    pub fn vendors(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// The factory that runs `vendor`'s batteries.
    pub fn factory(&self, vendor: &str) -> &Arc<dyn BmsFactory> {
        self.factories.get(vendor).unwrap_or(&self.fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::SiteDescription;
    use bmsfw_can::CanEvent;
    use std::sync::Mutex;
    use std::time::Duration;

    const SITE: &str = r#"
[[bus]]
name = "sim0"
bitrate = 500000

[[bus.battery]]
name = "house"
vendor = "voltara"
manufacturer = "VOLTARA"
bms_name = "VX-48"
product_code = 0x0B17
firmware = [4, 15]
capacity_ah = 300
soc = 70

[[bus]]
name = "sim1"
bitrate = 500000

[[bus.battery]]
name = "shed"
vendor = "acme"
manufacturer = "ACME"
bms_name = "A1"
product_code = 1
firmware = [1, 0]
capacity_ah = 50
soc = 60
"#;

    /// A vendor factory that notes what it was asked for and runs a plain battery with
    /// controls of its own.
    #[derive(Default)]
    struct Acme {
        started: Mutex<Vec<(String, String)>>,
        refuse: Option<&'static str>,
    }

    struct AcmeControls(&'static str);

    impl BmsFactory for Acme {
        fn spawn(
            &self,
            battery: &SiteBattery,
            iface: Arc<dyn CanInterface>,
            epoch: Epoch,
        ) -> Result<SpawnedBms, StartError> {
            if let Some(why) = self.refuse {
                return Err(StartError::new(battery, why));
            }
            self.started
                .lock()
                .unwrap()
                .push((battery.name.clone(), iface.name().to_owned()));
            let mut spawned = PlainBms.spawn(battery, iface, epoch)?;
            spawned.vendor = Some(Arc::new(AcmeControls("acme bootloader")));
            Ok(spawned)
        }
    }

    /// The manufacturer name the first 0x35E heard by `node` carries.
    async fn manufacturer(node: &crate::bus::SimNode) -> Vec<u8> {
        loop {
            if let CanEvent::Frame(rx) = node.recv().await.unwrap() {
                if rx.frame.id().raw() == 0x35E {
                    return rx.frame.data().to_vec();
                }
            }
        }
    }

    fn site() -> SiteDescription {
        SiteDescription::parse(SITE, "<test>").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn registered_vendors_get_their_factory_and_the_others_a_plain_bms() {
        let acme = Arc::new(Acme::default());
        let mut registry = BmsRegistry::new();
        registry.register("acme", acme.clone());
        assert_eq!(registry.vendors().collect::<Vec<_>>(), vec!["acme"]);
        let running = site().start_with(&registry).unwrap();
        assert_eq!(
            *acme.started.lock().unwrap(),
            vec![("shed".to_owned(), "sim1".to_owned())]
        );
        let shed = running.battery("shed").unwrap();
        assert_eq!(shed.description.vendor, "acme");
        assert_eq!(
            shed.vendor_controls::<AcmeControls>().unwrap().0,
            "acme bootloader"
        );
        let house = running.battery("house").unwrap();
        assert!(house.vendor_controls::<AcmeControls>().is_none());
        assert_eq!(house.control().snapshot().soc, 70.0);

        // Each battery broadcasts on its own bus, and only there.
        let gx0 = running.bus("sim0").unwrap().attach("gx");
        let gx1 = running.bus("sim1").unwrap().attach("gx");
        assert_eq!(manufacturer(&gx0).await, b"VOLTARA\0");
        assert_eq!(manufacturer(&gx1).await, b"ACME\0\0\0\0");

        // The controls reach the running battery: cut the house's power.
        house.control().power_cut();
        tokio::time::sleep(Duration::from_secs(2)).await;
        while gx0.try_recv().unwrap().is_some() {}
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            gx0.try_recv().unwrap(),
            None,
            "a battery without power is silent"
        );
        assert_eq!(running.buses().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_factory_refusal_names_the_battery() {
        let mut registry = BmsRegistry::new();
        registry.register(
            "acme",
            Arc::new(Acme {
                refuse: Some("no bootloader image for product 0x0001"),
                ..Acme::default()
            }),
        );
        let e = site().start_with(&registry).unwrap_err();
        assert_eq!(
            e.to_string(),
            "battery \"shed\" (vendor \"acme\"): no bootloader image for product 0x0001"
        );
    }
}
