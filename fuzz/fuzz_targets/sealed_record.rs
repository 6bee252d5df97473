//! Opening stored sealed bytes (nonce and ciphertext of any length, any content) under a fixed key
//! and binding: refused as tampered, never a panic and never plaintext for bytes not sealed here.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sharevault_core::envelope::{self, Binding};
use sharevault_core::DataKey;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b) % 32).min(data.len().saturating_sub(1));
    let rest = data.get(1..).unwrap_or_default();
    let (nonce, ct) = rest.split_at(split.min(rest.len()));
    let binding =
        Binding { environment: "fuzz", wallet_id: "w", address_key: "0xab", chain_name: "EVM", generation: 1 };
    let key = DataKey::from_bytes([1u8; 32]);
    assert!(envelope::open(&key, &binding, nonce, ct).is_err(), "random bytes opened");
});
