//! The contract of simulated BMS models: a battery maker's BMS (its bootloader, its
//! flash slots, its restarts) as a library that bmsfw's simulator loads, the way the
//! engine loads the vendor's plugin.
//!
//! A vendor ships the model beside the plugin. A site file names it by path:
//!
//! ```toml
//! [[bus.battery]]
//! name = "shed"
//! vendor = "acme"
//! model = "libacme_model.so"            # relative to the site file
//! model_options = { secret = "demo" }  # handed to the model as TOML text
//! # ... the battery's BMS-Can identity and pack as for any battery
//! ```
//!
//! and `bmsfw gx --sim`, `bmsfw demo --site` and `bmsfw capture --sim` run it. The
//! simulator keeps the battery's pack and its BMS-Can telemetry (0x351 to 0x382); the
//! model is the vendor's part: the frames of its update protocol, its flash, its
//! restarts. Through [`BmsView`] the model tells the simulator which firmware the
//! telemetry names (0x35F) and when the BMS is silent; through [`FlashView`] it tells a
//! test what is really in its flash (the ground truth a campaign checks).
//!
//! Like a plugin session, a model is a sans-IO state machine: [`Model::handle_frame`],
//! [`Model::handle_timeout`], [`Model::poll_transmit`], [`Model::poll_timeout`], all at
//! the simulator's clock. It never sleeps, spawns or touches the network.
//!
//! ```
//! use bmsfw_sim_api::{BmsView, CanFrame, CanId, FlashView, FrameFilter, Model, ModelSetup, Timestamp};
//!
//! /// A BMS that answers every request on 0x600 with an acknowledgement on 0x680.
//! struct Echo {
//!     setup: ModelSetup,
//!     reply: Option<CanFrame>,
//! }
//!
//! impl Model for Echo {
//!     fn new(setup: &ModelSetup) -> Result<Echo, String> {
//!         Ok(Echo { setup: setup.clone(), reply: None })
//!     }
//!     fn filters(&self) -> Vec<FrameFilter> {
//!         vec![FrameFilter::exact(CanId::standard(0x600).unwrap())]
//!     }
//!     fn handle_frame(&mut self, _now: Timestamp, _frame: &CanFrame) {
//!         self.reply = CanFrame::new(CanId::standard(0x680).unwrap(), &[0x06]);
//!     }
//!     fn poll_transmit(&mut self, _now: Timestamp) -> Option<CanFrame> {
//!         self.reply.take()
//!     }
//!     fn bms(&self) -> BmsView {
//!         BmsView::running(self.setup.firmware)
//!     }
//!     fn flash(&self) -> FlashView {
//!         FlashView::new(self.setup.firmware.to_vec())
//!     }
//! }
//!
//! bmsfw_sim_api::export_model!(Echo, "echo", "1.0.0");
//! ```
//!
//! Build it as `crate-type = ["cdylib"]`. A panic inside the model is caught at the
//! boundary: the model goes silent and the simulator reports [`ModelObject::fault`].

#![deny(missing_docs)]

mod export;
mod model;
mod module;
mod view;

pub use model::{BoxedModel, Model, ModelObject, ModelObject_TO};
pub use module::{MODEL_CONTRACT_VERSION, ModelIdentity, ModelModule, ModelModule_Ref, ModelSetup};
pub use view::{BmsView, FlashView, FrameFilter, Telemetry};

pub use bmsfw_plugin_api::{CanFrame, CanId, ContractVersion, Timestamp};

/// The abi_stable version the contract is built on, re-exported for `export_model!`.
pub use abi_stable;

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{GuardedModel, identity, new_model, root_module};
}
