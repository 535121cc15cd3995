//! The glue `export_model!` generates: the root module and a model object whose every
//! call is guarded against panics (a panic must not cross the `extern "C"` boundary).

use crate::model::{BoxedModel, Model, ModelObject, ModelObject_TO};
use crate::module::{
    MODEL_CONTRACT_VERSION, ModelIdentity, ModelModule, ModelModule_Ref, ModelSetup,
};
use crate::view::{BmsView, FlashView, FrameFilter};
use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RString, RVec},
};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Exports a [`Model`] as the library's root module.
///
/// Call it once, at the crate root of a `crate-type = ["cdylib"]` crate, with the model
/// type, its name and its version:
///
/// ```text
/// bmsfw_sim_api::export_model!(AcmeBms, "acme", "1.0.0");
/// ```
#[macro_export]
macro_rules! export_model {
    ($model:ty, $name:expr, $version:expr) => {
        const _: () = {
            extern "C" fn __bmsfw_model_identity() -> $crate::ModelIdentity {
                $crate::__private::identity($name, $version)
            }

            extern "C" fn __bmsfw_new_model(
                setup: &$crate::ModelSetup,
            ) -> $crate::abi_stable::std_types::RResult<
                $crate::BoxedModel,
                $crate::abi_stable::std_types::RString,
            > {
                $crate::__private::new_model::<$model>(setup)
            }

            extern "C" fn __bmsfw_load_root_module()
            -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(|| {
                    $crate::__private::root_module(__bmsfw_model_identity, __bmsfw_new_model)
                })
            }

            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            static __BMSFW_MODEL_LIB_HEADER: $crate::abi_stable::library::LibHeader = unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<
                    $crate::ModelModule_Ref,
                >(
                    __bmsfw_load_root_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            };
        };
    };
}

/// The identity of a model library.
pub fn identity(name: &str, version: &str) -> ModelIdentity {
    ModelIdentity {
        name: name.into(),
        version: version.into(),
        contract: MODEL_CONTRACT_VERSION,
    }
}

/// The root module of a model library.
pub fn root_module(
    identity: extern "C" fn() -> ModelIdentity,
    new_model: extern "C" fn(&ModelSetup) -> RResult<BoxedModel, RString>,
) -> ModelModule_Ref {
    ModelModule {
        identity,
        new_model,
    }
    .leak_into_prefix()
}

/// Starts model `M` for `setup`, guarded.
pub fn new_model<M: Model>(setup: &ModelSetup) -> RResult<BoxedModel, RString> {
    match catch_unwind(AssertUnwindSafe(|| M::new(setup))) {
        Ok(Ok(model)) => RResult::ROk(ModelObject_TO::from_value(
            GuardedModel { model, fault: None },
            TD_Opaque,
        )),
        Ok(Err(message)) => RResult::RErr(message.into()),
        Err(payload) => RResult::RErr(panic_text("new", payload.as_ref()).into()),
    }
}

fn panic_text(call: &str, payload: &(dyn Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    format!("the model panicked in {call}: {message}")
}

/// A model whose calls are guarded: after a panic it is silent and keeps the panic's
/// text as its fault.
pub struct GuardedModel<M> {
    model: M,
    fault: Option<String>,
}

impl<M: Model> GuardedModel<M> {
    /// Runs `f` on the model unless it faulted; a panic becomes its fault.
    fn run<T>(&mut self, call: &str, fallback: T, f: impl FnOnce(&mut M) -> T) -> T {
        if self.fault.is_some() {
            return fallback;
        }
        match catch_unwind(AssertUnwindSafe(|| f(&mut self.model))) {
            Ok(value) => value,
            Err(payload) => {
                self.fault = Some(panic_text(call, payload.as_ref()));
                fallback
            }
        }
    }

    /// Reads the model unless it faulted. A panic in a read-only call cannot be kept (the
    /// call has `&self`), so the fallback is returned and the next mutable call finds the
    /// model in whatever state it left.
    fn read<T>(&self, fallback: T, f: impl FnOnce(&M) -> T) -> T {
        if self.fault.is_some() {
            return fallback;
        }
        catch_unwind(AssertUnwindSafe(|| f(&self.model))).unwrap_or(fallback)
    }

    /// The telemetry the BMS shows once it faulted: silent, the last firmware it named
    /// unknown, so the start firmware is kept by the simulator.
    fn silent() -> BmsView {
        BmsView::silent([0, 0])
    }
}

impl<M: Model> ModelObject for GuardedModel<M> {
    fn filters(&self) -> RVec<FrameFilter> {
        self.read(Vec::new(), |m| m.filters()).into()
    }
    fn handle_frame(&mut self, now: Timestamp, frame: CanFrame) {
        self.run("handle_frame", (), |m| m.handle_frame(now, &frame));
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        self.run("handle_timeout", (), |m| m.handle_timeout(now));
    }
    fn poll_transmit(&mut self, now: Timestamp) -> ROption<CanFrame> {
        self.run("poll_transmit", None, |m| m.poll_transmit(now))
            .into()
    }
    fn poll_timeout(&self) -> ROption<Timestamp> {
        self.read(None, |m| m.poll_timeout()).into()
    }
    fn power_cut(&mut self, now: Timestamp) {
        self.run("power_cut", (), |m| m.power_cut(now));
    }
    fn power_restore(&mut self, now: Timestamp) {
        self.run("power_restore", (), |m| m.power_restore(now));
    }
    fn bms(&self) -> BmsView {
        self.read(Self::silent(), |m| m.bms())
    }
    fn flash(&self) -> FlashView {
        self.read(FlashView::new(Vec::new()), |m| m.flash())
    }
    fn fault(&self) -> ROption<RString> {
        self.fault.clone().map(RString::from).into()
    }
}

#[cfg(test)]
mod tests;
