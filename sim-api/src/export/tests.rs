use super::*;
use crate::view::Telemetry;
use bmsfw_plugin_api::CanId;

/// Answers `[0x06]` on 0x680 to each frame on 0x600; panics on a frame `[0xEE]`.
struct Echo {
    firmware: [u8; 2],
    reply: Option<CanFrame>,
}

impl Model for Echo {
    fn new(setup: &ModelSetup) -> Result<Echo, String> {
        if setup.options.as_str() == "refuse = true" {
            return Err("option refuse: this model refuses".into());
        }
        if setup.options.as_str() == "panic = true" {
            panic!("asked to panic");
        }
        Ok(Echo {
            firmware: setup.firmware,
            reply: None,
        })
    }
    fn filters(&self) -> Vec<FrameFilter> {
        vec![FrameFilter::exact(CanId::standard(0x600).unwrap())]
    }
    fn handle_frame(&mut self, _now: Timestamp, frame: &CanFrame) {
        assert_ne!(frame.data(), [0xEE], "a poisoned frame");
        self.reply = CanFrame::new(CanId::standard(0x680).unwrap(), &[0x06]);
        self.firmware[1] += 1;
    }
    fn poll_transmit(&mut self, _now: Timestamp) -> Option<CanFrame> {
        self.reply.take()
    }
    fn bms(&self) -> BmsView {
        BmsView::running(self.firmware)
    }
    fn flash(&self) -> FlashView {
        FlashView::new(self.firmware.to_vec())
    }
}

fn setup(options: &str) -> ModelSetup {
    ModelSetup {
        battery: "shed".into(),
        manufacturer: "ACME".into(),
        product_code: 7,
        firmware: [1, 0],
        serial: "".into(),
        modules: 1,
        options: options.into(),
    }
}

fn frame(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
}

#[test]
fn a_guarded_model_runs_and_answers_through_the_object() {
    let mut model = new_model::<Echo>(&setup("")).unwrap();
    assert_eq!(model.filters().len(), 1);
    assert!(model.filters()[0].matches(&frame(0x600, &[1])));
    assert!(!model.filters()[0].matches(&frame(0x601, &[1])));
    model.handle_frame(Timestamp::ZERO, frame(0x600, &[1]));
    assert_eq!(
        model.poll_transmit(Timestamp::ZERO).into_option(),
        Some(frame(0x680, &[0x06]))
    );
    assert_eq!(model.poll_transmit(Timestamp::ZERO).into_option(), None);
    assert_eq!(model.bms(), BmsView::running([1, 1]));
    assert_eq!(model.flash().running_version.as_slice(), &[1, 1]);
    assert_eq!(model.fault().into_option(), None);
}

#[test]
fn a_refusal_or_a_panic_in_new_is_an_error_naming_it() {
    let refused = new_model::<Echo>(&setup("refuse = true")).err().unwrap();
    assert!(refused.as_str().contains("option refuse"), "{refused}");
    let panicked = new_model::<Echo>(&setup("panic = true")).err().unwrap();
    assert!(panicked.as_str().contains("panicked in new"), "{panicked}");
    assert!(panicked.as_str().contains("asked to panic"), "{panicked}");
}

#[test]
fn a_panic_in_a_call_silences_the_model_and_is_kept_as_its_fault() {
    let mut model = new_model::<Echo>(&setup("")).unwrap();
    model.handle_frame(Timestamp::ZERO, frame(0x600, &[0xEE]));
    let fault = model.fault().into_option().expect("the panic is kept");
    assert!(fault.as_str().contains("handle_frame"), "{fault}");
    assert!(fault.as_str().contains("a poisoned frame"), "{fault}");
    // Silent from now on, whatever it is fed.
    model.handle_frame(Timestamp::ZERO, frame(0x600, &[1]));
    assert_eq!(model.poll_transmit(Timestamp::ZERO).into_option(), None);
    assert_eq!(model.bms().telemetry, Telemetry::Silent);
}

#[test]
fn the_root_module_carries_the_identity_and_the_contract() {
    extern "C" fn id() -> ModelIdentity {
        identity("echo", "1.2.3")
    }
    extern "C" fn new(setup: &ModelSetup) -> RResult<BoxedModel, RString> {
        new_model::<Echo>(setup)
    }
    let module = root_module(id, new);
    let identity = (module.identity())();
    assert_eq!(identity.name.as_str(), "echo");
    assert_eq!(identity.version.as_str(), "1.2.3");
    assert_eq!(identity.contract, MODEL_CONTRACT_VERSION);
    assert!((module.new_model())(&setup("")).is_ok());
    assert_eq!(
        abi_stable::library::ROOT_MODULE_LOADER_NAME,
        "_1as_0lib_1header_0root_bmodule_bloader"
    );
}

#[test]
fn filters_tell_standard_from_extended_identifiers() {
    let standard = FrameFilter::exact(CanId::standard(0x123).unwrap());
    let extended = FrameFilter::exact(CanId::extended(0x123).unwrap());
    let s = frame(0x123, &[]);
    let e = CanFrame::new(CanId::extended(0x123).unwrap(), &[]).unwrap();
    assert!(standard.matches(&s) && !standard.matches(&e));
    assert!(extended.matches(&e) && !extended.matches(&s));
    let range = FrameFilter {
        id: CanId::standard(0x700).unwrap(),
        mask: 0x700,
    };
    assert!(range.matches(&frame(0x7E2, &[])) && !range.matches(&frame(0x6E2, &[])));
}
