//! Translation between the engine's classic CAN frames and filters and the kernel's.
//!
//! Everything here is pure so it can be tested on machines whose kernel has no CAN.

use super::error_frames::{DecodedError, decode_error_frame};
use crate::interface::CanFilter;
use bmsfw_plugin_api::{CanFrame, CanId};
use socketcan::{
    CanDataFrame, EmbeddedFrame, Id,
    id::{CAN_EFF_FLAG, CAN_EFF_MASK, CAN_RTR_FLAG, CAN_SFF_MASK},
};

/// The most filters one raw socket takes (`CAN_RAW_FILTER_MAX` in `linux/can/raw.h`).
pub const MAX_KERNEL_FILTERS: usize = 512;

/// The engine's form of a received data frame.
///
/// `None` only for a frame the socketcan crate itself could not have produced (an
/// identifier out of range or a payload over 8 bytes); the caller drops it.
pub(crate) fn frame_from_kernel(frame: &CanDataFrame) -> Option<CanFrame> {
    let id = match frame.id() {
        Id::Standard(id) => CanId::standard(id.as_raw())?,
        Id::Extended(id) => CanId::extended(id.as_raw())?,
    };
    CanFrame::new(id, frame.data())
}

/// What one frame read from a raw socket means to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A data frame.
    Data(CanFrame),
    /// A remote frame: not carried by the engine.
    Remote,
    /// An error frame, decoded.
    Error(DecodedError),
}

/// Classifies and decodes a frame read from a raw socket.
pub(crate) fn inbound_from_kernel(frame: socketcan::CanFrame) -> Inbound {
    match frame {
        socketcan::CanFrame::Data(data) => match frame_from_kernel(&data) {
            Some(frame) => Inbound::Data(frame),
            // Unreachable for frames the socketcan crate builds (it clamps the length to
            // 8 and masks identifiers); treated as a refused frame rather than a panic.
            None => Inbound::Remote,
        },
        socketcan::CanFrame::Remote(_) => Inbound::Remote,
        socketcan::CanFrame::Error(error) => Inbound::Error(decode_error_frame(error)),
    }
}

/// The kernel filter accepting exactly the data frames `filter` accepts.
///
/// The kernel compares `frame_id & mask == filter_id & mask` over the whole identifier
/// word, flags included, so the extended-format flag and the remote-request flag go into
/// the mask: a standard filter never passes an extended frame with the same number, and
/// remote frames (which the engine does not carry) never pass at all.
pub(crate) fn filter_to_kernel(filter: &CanFilter) -> socketcan::CanFilter {
    let (id, id_mask) = if filter.id.is_extended() {
        (filter.id.raw() | CAN_EFF_FLAG, CAN_EFF_MASK)
    } else {
        (filter.id.raw(), CAN_SFF_MASK)
    };
    socketcan::CanFilter::new(id, (filter.mask & id_mask) | CAN_EFF_FLAG | CAN_RTR_FLAG)
}

/// The kernel filter accepting every data frame, standard and extended, and no remote
/// frame: what an empty filter list means to the engine.
pub(crate) fn accept_all_data_frames() -> socketcan::CanFilter {
    socketcan::CanFilter::new(0, CAN_RTR_FLAG)
}

/// `frame` as the kernel's `struct can_frame` (`CAN_EFF_FLAG` set for a 29-bit
/// identifier).
pub(crate) fn raw_frame(frame: &CanFrame) -> libc::can_frame {
    let id = frame.id();
    // SAFETY: `can_frame` is plain old data; all zeros is a valid value.
    let mut raw: libc::can_frame = unsafe { std::mem::zeroed() };
    raw.can_id = if id.is_extended() {
        id.raw() | libc::CAN_EFF_FLAG
    } else {
        id.raw()
    };
    let data = frame.data();
    raw.can_dlc = data.len() as u8;
    raw.data[..data.len()].copy_from_slice(data);
    raw
}

/// Hands `frames` to the kernel with one `sendmmsg(2)`; returns how many it took (at
/// least one), or the error of the first.
pub(crate) fn send_many(
    fd: std::os::fd::RawFd,
    frames: &[libc::can_frame],
) -> std::io::Result<usize> {
    if frames.is_empty() {
        return Ok(0);
    }
    let count = frames.len().min(1024);
    let mut iovecs: Vec<libc::iovec> = frames[..count]
        .iter()
        .map(|f| libc::iovec {
            iov_base: (f as *const libc::can_frame).cast_mut().cast(),
            iov_len: std::mem::size_of::<libc::can_frame>(),
        })
        .collect();
    let mut messages: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: `mmsghdr` is plain old data; all zeros is a valid value.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: `messages` holds `count` headers, each pointing at one iovec that points at
    // one `can_frame` of `frames`; all outlive the call, and the kernel only reads them.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            messages.as_mut_ptr(),
            u32::try_from(count).unwrap_or(u32::MAX),
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(usize::try_from(sent).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use socketcan::Frame as _;
    use socketcan::{ExtendedId, StandardId};

    /// The socketcan crate's form of a data frame with the same identifier, format and
    /// payload (the tests compare [`raw_frame`] with it).
    ///
    /// `None` cannot happen for a frame the plugin API built (its identifier and length are
    /// range-checked on construction); it is kept as an answer rather than a panic.
    fn frame_to_kernel(frame: &CanFrame) -> Option<socketcan::CanFrame> {
        let id = frame.id();
        let id = if id.is_extended() {
            Id::Extended(ExtendedId::new(id.raw())?)
        } else {
            Id::Standard(StandardId::new(u16::try_from(id.raw()).ok()?)?)
        };
        CanDataFrame::new(id, frame.data()).map(socketcan::CanFrame::Data)
    }

    /// The kernel's matching rule for one raw-socket filter (`net/can/af_can.c`,
    /// non-inverted filters): the frame passes when `can_id & mask == id & mask`.
    fn kernel_accepts(filter: &socketcan::CanFilter, can_id: u32) -> bool {
        let f = filter.as_ref();
        (can_id & f.can_mask) == (f.can_id & f.can_mask)
    }

    /// The identifier word the kernel puts in a received frame.
    fn kernel_id_word(id: CanId, remote: bool) -> u32 {
        let mut word = id.raw();
        if id.is_extended() {
            word |= CAN_EFF_FLAG;
        }
        if remote {
            word |= CAN_RTR_FLAG;
        }
        word
    }

    fn any_id() -> impl Strategy<Value = CanId> {
        prop_oneof![
            (0u16..=0x7FF).prop_map(|raw| CanId::standard(raw).expect("in range")),
            (0u32..=0x1FFF_FFFF).prop_map(|raw| CanId::extended(raw).expect("in range")),
            // Identifiers close to one another, so filters and frames often collide.
            (0u16..8).prop_map(|raw| CanId::standard(0x350 + raw).expect("in range")),
            (0u32..8).prop_map(|raw| CanId::extended(0x350 + raw).expect("in range")),
        ]
    }

    fn any_mask() -> impl Strategy<Value = u32> {
        prop_oneof![
            Just(0),
            Just(0x7FF),
            Just(0x1FFF_FFFF),
            Just(u32::MAX),
            Just(0x7F8),
            any::<u32>()
        ]
    }

    proptest! {
        #[test]
        fn frames_survive_the_round_trip_through_the_kernel_form(
            id in any_id(),
            data in proptest::collection::vec(any::<u8>(), 0..=8),
        ) {
            let frame = CanFrame::new(id, &data).expect("at most 8 bytes");
            let kernel = frame_to_kernel(&frame).expect("representable");
            let socketcan::CanFrame::Data(data_frame) = kernel else {
                panic!("a data frame became {kernel:?}");
            };
            prop_assert_eq!(data_frame.is_extended(), id.is_extended());
            prop_assert_eq!(data_frame.raw_id(), id.raw());
            prop_assert_eq!(data_frame.dlc(), data.len());
            prop_assert_eq!(frame_from_kernel(&data_frame), Some(frame));
            // What is handed to the kernel: the same identifier, flag, length and bytes.
            let raw = raw_frame(&frame);
            prop_assert_eq!(raw.can_id & libc::CAN_EFF_FLAG != 0, id.is_extended());
            prop_assert_eq!(raw.can_id & libc::CAN_EFF_MASK, id.raw());
            prop_assert_eq!(usize::from(raw.can_dlc), data.len());
            prop_assert_eq!(&raw.data[..data.len()], &data[..]);
            prop_assert!(raw.data[data.len()..].iter().all(|b| *b == 0));
        }

        #[test]
        fn kernel_filters_accept_exactly_what_the_engine_filter_accepts(
            filter_id in any_id(),
            mask in any_mask(),
            frame_id in any_id(),
        ) {
            let filter = CanFilter { id: filter_id, mask };
            let kernel = filter_to_kernel(&filter);
            prop_assert_eq!(
                kernel_accepts(&kernel, kernel_id_word(frame_id, false)),
                filter.accepts(frame_id),
                "filter {:?} on frame id {}", filter, frame_id
            );
            prop_assert!(!kernel_accepts(&kernel, kernel_id_word(frame_id, true)),
                "remote frame {} passed filter {:?}", frame_id, filter);
        }

        #[test]
        fn the_open_filter_passes_every_data_frame_and_no_remote_frame(id in any_id()) {
            let open = accept_all_data_frames();
            prop_assert!(kernel_accepts(&open, kernel_id_word(id, false)));
            prop_assert!(!kernel_accepts(&open, kernel_id_word(id, true)));
        }
    }

    proptest! {
        #[test]
        fn any_frame_the_kernel_could_hand_over_is_classified_without_panicking(
            can_id in any::<u32>(),
            dlc in any::<u8>(),
            data in any::<[u8; 8]>(),
        ) {
            let mut raw = socketcan::frame::can_frame_default();
            raw.can_id = can_id;
            raw.can_dlc = dlc;
            raw.data = data;
            let flags_error = can_id & socketcan::id::CAN_ERR_FLAG != 0;
            let flags_remote = can_id & CAN_RTR_FLAG != 0;
            match inbound_from_kernel(socketcan::CanFrame::from(raw)) {
                Inbound::Error(decoded) => {
                    prop_assert!(flags_error);
                    prop_assert!(!decoded.description.is_empty());
                }
                Inbound::Remote => prop_assert!(!flags_error && flags_remote),
                Inbound::Data(frame) => {
                    prop_assert!(!flags_error && !flags_remote);
                    let extended = can_id & CAN_EFF_FLAG != 0;
                    prop_assert_eq!(frame.id().is_extended(), extended);
                    let id_mask = if extended { CAN_EFF_MASK } else { CAN_SFF_MASK };
                    prop_assert_eq!(frame.id().raw(), can_id & id_mask);
                    let len = usize::from(dlc.min(8));
                    prop_assert_eq!(frame.data(), &data[..len]);
                }
            }
        }
    }

    #[test]
    fn standard_and_extended_filters_with_the_same_number_stay_apart() {
        let standard = CanId::standard(0x351).expect("in range");
        let extended = CanId::extended(0x351).expect("in range");
        let only_standard = filter_to_kernel(&CanFilter {
            id: standard,
            mask: 0x7FF,
        });
        let only_extended = filter_to_kernel(&CanFilter {
            id: extended,
            mask: 0x1FFF_FFFF,
        });
        assert!(kernel_accepts(
            &only_standard,
            kernel_id_word(standard, false)
        ));
        assert!(!kernel_accepts(
            &only_standard,
            kernel_id_word(extended, false)
        ));
        assert!(kernel_accepts(
            &only_extended,
            kernel_id_word(extended, false)
        ));
        assert!(!kernel_accepts(
            &only_extended,
            kernel_id_word(standard, false)
        ));
    }
}
