//! What an SDO server serves: the object dictionary of a device.

use super::{AbortCode, ObjectAddress};
use bmsfw_plugin_api::Timestamp;
use std::time::Duration;

/// The object dictionary behind an [`SdoServer`](super::SdoServer), as a simulated
/// battery management system implements it.
///
/// Every download, whatever its kind, arrives the same way: [`begin_write`] once, then
/// [`write`] with the data in order (an expedited download in one call, a segmented
/// download segment by segment, a block download segment by segment as segments arrive
/// in order), then [`end_write`] once the transfer is complete and, for block downloads,
/// its CRC checked. A transfer that ends any other way gets [`abort_write`] instead of
/// [`end_write`]. The dictionary decides what to keep until [`end_write`]: a flash
/// model writes as data comes, a small value is best applied at the end.
///
/// Writes return how long they keep the device busy; the server delays its next
/// response (a segment confirmation, a block acknowledgement, the final confirmation)
/// until that time has passed, so per-segment flash timing shows on the bus. Every call
/// gets the current time, so a dictionary can model states that change with time (for
/// example a flash status that stays busy while a clear runs).
///
/// [`begin_write`]: ObjectDictionary::begin_write
/// [`write`]: ObjectDictionary::write
/// [`end_write`]: ObjectDictionary::end_write
/// [`abort_write`]: ObjectDictionary::abort_write
pub trait ObjectDictionary {
    /// The value of `object` for an upload.
    fn read(&mut self, now: Timestamp, object: ObjectAddress) -> Result<Vec<u8>, AbortCode>;

    /// A download of `size` bytes (when the client indicated it) to `object` begins.
    /// Refuse it with the abort code to send.
    fn begin_write(
        &mut self,
        now: Timestamp,
        object: ObjectAddress,
        size: Option<u32>,
    ) -> Result<(), AbortCode>;

    /// The next `data`, `offset` bytes into the download. Returns how long the write
    /// keeps the device busy.
    fn write(
        &mut self,
        now: Timestamp,
        object: ObjectAddress,
        offset: u64,
        data: &[u8],
    ) -> Result<Duration, AbortCode>;

    /// The download of `len` bytes is complete. Returns how long storing it keeps the
    /// device busy; the final confirmation goes out after that.
    fn end_write(
        &mut self,
        now: Timestamp,
        object: ObjectAddress,
        len: u64,
    ) -> Result<Duration, AbortCode>;

    /// The download ended without completing, for `code`.
    fn abort_write(&mut self, now: Timestamp, object: ObjectAddress, code: AbortCode);
}
