//! The model: what a vendor implements, and the object the simulator holds.
// `#[sabi_trait]` (abi_stable 0.11) places trait impls inside a generated module.
#![allow(non_local_definitions)]

use crate::module::ModelSetup;
use crate::view::{BmsView, FlashView, FrameFilter};
use abi_stable::{
    sabi_trait,
    std_types::{RBox, ROption, RString, RVec},
};
use bmsfw_plugin_api::{CanFrame, Timestamp};

/// A vendor's simulated BMS, as a sans-IO state machine on the simulator's clock.
///
/// The simulator hands the model every frame that passes [`filters`](Model::filters),
/// calls [`handle_timeout`](Model::handle_timeout) once the time of
/// [`poll_timeout`](Model::poll_timeout) has come, and sends what
/// [`poll_transmit`](Model::poll_transmit) returns until it returns `None`. After every
/// call it reads [`bms`](Model::bms) to keep the battery's telemetry in step.
pub trait Model: Send + Sized + 'static {
    /// The BMS of one battery, as the site file describes it. An `Err` names what in
    /// `setup` (its options, most often) the model cannot run with.
    fn new(setup: &ModelSetup) -> Result<Self, String>;
    /// The frames the BMS listens to, read once when it starts.
    fn filters(&self) -> Vec<FrameFilter>;
    /// A frame on the bus at `now` that passed the filters.
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame);
    /// The time of `poll_timeout` has come (or passed: `now` may be later).
    fn handle_timeout(&mut self, _now: Timestamp) {}
    /// The next frame to send at `now`, if one is due.
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame>;
    /// When the model next needs `handle_timeout`, if ever.
    fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }
    /// The BMS loses its power at `now`: it goes silent and forgets what it held in RAM
    /// (a session, a download in progress); its flash stays.
    fn power_cut(&mut self, _now: Timestamp) {}
    /// The power is back at `now`: the BMS boots from its flash.
    fn power_restore(&mut self, _now: Timestamp) {}
    /// What the battery's BMS-Can telemetry shows now.
    fn bms(&self) -> BmsView;
    /// The ground truth of the flash now.
    fn flash(&self) -> FlashView;
}

/// The model as it crosses the library boundary. Vendors implement [`Model`];
/// `export_model!` wraps it in this object and guards every call against panics.
#[sabi_trait]
pub trait ModelObject: Send {
    /// See [`Model::filters`].
    fn filters(&self) -> RVec<FrameFilter>;
    /// See [`Model::handle_frame`].
    fn handle_frame(&mut self, now: Timestamp, frame: CanFrame);
    /// See [`Model::handle_timeout`].
    fn handle_timeout(&mut self, now: Timestamp);
    /// See [`Model::poll_transmit`].
    fn poll_transmit(&mut self, now: Timestamp) -> ROption<CanFrame>;
    /// See [`Model::poll_timeout`].
    fn poll_timeout(&self) -> ROption<Timestamp>;
    /// See [`Model::power_cut`].
    fn power_cut(&mut self, now: Timestamp);
    /// See [`Model::power_restore`].
    fn power_restore(&mut self, now: Timestamp);
    /// See [`Model::bms`].
    fn bms(&self) -> BmsView;
    /// See [`Model::flash`].
    fn flash(&self) -> FlashView;
    /// The panic that stopped the model, if one did. A model that panicked stays
    /// silent: it sends nothing more and its telemetry stops.
    #[sabi(last_prefix_field)]
    fn fault(&self) -> ROption<RString>;
}

/// A model behind the library boundary, owned by the simulator.
pub type BoxedModel = ModelObject_TO<'static, RBox<()>>;
