//! The safety gates of DESIGN "Safety gates" and the manual's section 2.
//!
//! Every gate is evaluated when an update is requested ([`Moment::Request`]), right before
//! stage 2 ([`Moment::BeforeTransfer`]), and continuously while stage 2 runs
//! ([`Moment::DuringTransfer`]: on every telemetry change and on the engine's timer). An
//! evaluation always yields one [`GateVerdict`] per gate, naming the gate, the measured
//! value and the limit; a gate is never skipped silently: a gate that cannot be decided yet
//! is [`Outcome::Deferred`], and the battery's expected silence while it restarts is an
//! explicit [`Outcome::Suspended`] that names the declared window. A site value that is
//! unknown (missing, invalid or stale: see [`site`]) makes its gate refuse, measuring
//! "unknown" and why; it never passes.
//!
//! | gate | code | refuses when |
//! |---|---|---|
//! | VRM access | 720 | `/Settings/Network/VrmPortal` is not Full, or unknown |
//! | GX firmware | 721 | the GX firmware is below `gates.min_gx_firmware`, or unknown |
//! | bus bit rate | 722 | the bus is not at 500 kbit/s (or does not say) |
//! | state of charge | 723 | SOC (0x355) below `gates.soc_min_percent` (50 % or more) |
//! | communicating | 724 | a required frame (0x351, 0x355, 0x356, 0x35A) is older than 3 s |
//! | controller state | 725 | the GX's CAN controller is error-passive, bus-off or stopped |
//! | no active alarm | 726 | 0x35A reports an alarm or 0x359 a protection flag |
//! | temperature | 727 | 0x356 temperature outside `gates.temperature_celsius` |
//! | no backup-power event | 728 | [`GridStatus::Lost`], or the grid unknown (see [`site`]) |
//! | bus free | 729 | another job runs on the same bus |
//! | acknowledgements | 730 | a precaution of the manual is not confirmed |
//! | version choice | 731 | the target is not newer and the installer did not choose otherwise |
//! | target approved | 732 | the target is outside the allowlist's firmware range |
//! | installed approved | 733 | the installed firmware is outside that range |

pub mod check;
pub mod gate;
pub mod inputs;
pub mod site;
pub mod verdict;

pub use check::evaluate;
pub use gate::Gate;
pub use inputs::{GateInputs, Silence, VersionInputs};
pub use site::{GridStatus, GxFirmware, SiteSnapshot, SiteStatus, SiteValue};
pub use verdict::{GateReport, GateVerdict, Moment, Outcome};
