//! `bmsfw campaign`: a seeded fault campaign over the whole update pipeline, in virtual
//! time. Each scenario draws a vendor, an image size and a set of faults at random
//! moments from one seed; the real engine updates the vendor's simulated battery with
//! the vendor's real plugin in its sandboxed host; then the campaign checks the promises
//! against the battery's ground truth and the frames on the wire:
//!
//! - a. the battery only ever boots its old firmware or the complete new firmware;
//! - b. it boots again once every fault is cleared: never bricked;
//! - c. the job ends within its bound, and the GX takes the next request;
//! - d. Completed only when the battery runs the new firmware, Failed always with a
//!   catalogue code, and the event log tells the same end;
//! - e. no transfer frame once a gate checked all along has been red for longer than one
//!   check interval and the abort's grace;
//! - f. the bus load stays under the cap in every 100 ms window.

pub mod run;
pub mod scenario;
pub mod truth;
