//! The root module every model library exports, and what it is given.
// abi_stable names the prefix reference `ModelModule_Ref`.
#![allow(non_camel_case_types)]

use crate::model::BoxedModel;
use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    sabi_types::VersionStrings,
    std_types::{RResult, RString},
};
use bmsfw_plugin_api::ContractVersion;

/// The version of the model contract this crate defines. The simulator refuses a model
/// library built against another major version.
pub const MODEL_CONTRACT_VERSION: ContractVersion = ContractVersion { major: 1, minor: 0 };

/// Who a model library is.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ModelIdentity {
    /// The model's name (the vendor's BMS it stands for), for logs and errors.
    pub name: RString,
    /// The model library's own version.
    pub version: RString,
    /// The contract it was built against (set by `export_model!`).
    pub contract: ContractVersion,
}

/// One battery of a site, as its model is started with it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ModelSetup {
    /// The battery's name in the site file.
    pub battery: RString,
    /// The battery's 0x35E manufacturer text.
    pub manufacturer: RString,
    /// 0x35F bytes 0-1.
    pub product_code: u16,
    /// 0x35F bytes 2-3 at start: the firmware the BMS runs.
    pub firmware: [u8; 2],
    /// 0x380/0x381, empty when the battery sends no serial number.
    pub serial: RString,
    /// Modules behind the BMS.
    pub modules: u16,
    /// The site file's `model_options` table as TOML text (empty when there is none).
    /// The model parses it and refuses, naming the key, what it does not understand.
    pub options: RString,
}

/// The entry points of a model library. Built by [`export_model!`](crate::export_model).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ModelModule_Ref, prefix_fields = ModelModule_Prefix)))]
pub struct ModelModule {
    /// Who the model is.
    pub identity: extern "C" fn() -> ModelIdentity,
    /// Starts the BMS of one battery, or says why it cannot.
    #[sabi(last_prefix_field)]
    pub new_model: extern "C" fn(setup: &ModelSetup) -> RResult<BoxedModel, RString>,
}

/// abi_stable's root-module declaration; the contract version is stored in the
/// library's header, so the simulator reads it before it calls anything.
impl RootModule for ModelModule_Ref {
    declare_root_module_statics! {ModelModule_Ref}
    const BASE_NAME: &'static str = "bmsfw_model";
    const NAME: &'static str = "bmsfw simulated BMS model";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.0.0");
}
