//! The CPU cost of a signed update command: the portal's signing and the GX's verification
//! (the canonical bytes, Ed25519, the key decoded from the command each time, as the GX
//! does), per command, on one core.
//!
//! Run with `cargo bench -p bmsfw-vrm-wire --bench signature` (release).

use bmsfw_vrm_wire::signature::{Nonce, sign_update, verify_update};
use bmsfw_vrm_wire::{
    Acknowledgement, CommandId, FileName, PortalId, RpcCommand, Serial, Sha256Hex, UpdateCommand,
    VersionPolicy,
};
use ed25519_dalek::SigningKey;
use std::hint::black_box;
use std::time::{Duration, Instant};

const ROUNDS: u32 = 5_000;

fn per_op(total: Duration) -> f64 {
    total.as_secs_f64() * 1e6 / f64::from(ROUNDS)
}

fn main() {
    let key = SigningKey::from_bytes(&[0x5a; 32]);
    let portal = PortalId::new("c0619ab1e2f3").unwrap();
    let id = CommandId::new("u-1a2b3c4d-17").unwrap();
    let update = UpdateCommand {
        battery: Serial::new("AUR10-240117").unwrap(),
        file_name: FileName::new("powercore10-4.16.bin").unwrap(),
        size: 1 << 20,
        chunk_size: 16 * 1024,
        sha256: Sha256Hex([0xab; 32]),
        acknowledgements: Acknowledgement::ALL.into_iter().collect(),
        version_policy: VersionPolicy::NewerOnly,
        targets: None,
        signature: None,
    };
    // Warm up.
    for i in 0..200u64 {
        let s = sign_update(&key, &portal, &id, &update, i, Nonce([1; 16]));
        verify_update(&s, &portal, &id, &update).unwrap();
    }
    let start = Instant::now();
    let mut last = None;
    for i in 0..u64::from(ROUNDS) {
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&i.to_be_bytes());
        last = Some(black_box(sign_update(
            &key,
            &portal,
            &id,
            black_box(&update),
            1_767_225_600_000 + i,
            Nonce(n),
        )));
    }
    let sign = start.elapsed();
    let signature = last.expect("signed");
    let start = Instant::now();
    for _ in 0..ROUNDS {
        verify_update(black_box(&signature), &portal, &id, black_box(&update)).unwrap();
    }
    let verify = start.elapsed();
    // The JSON the signature adds to the command message.
    let mut signed = update.clone();
    signed.signature = Some(signature);
    let with = RpcCommand {
        id: id.clone(),
        command: bmsfw_vrm_wire::Command::Update(signed),
    }
    .encode()
    .len();
    let without = RpcCommand {
        id,
        command: bmsfw_vrm_wire::Command::Update(update),
    }
    .encode()
    .len();
    println!("signed update commands, {ROUNDS} rounds each, one core:");
    println!("  sign (portal)   {:>8.1} us per command", per_op(sign));
    println!("  verify (GX)     {:>8.1} us per command", per_op(verify));
    println!(
        "  message         {without} -> {with} bytes (+{} for the signature)",
        with - without
    );
}
