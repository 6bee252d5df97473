//! What a vault reads from a stored row before it trusts it: the metadata JSON checked against
//! the row's identity columns, and the row MAC check over arbitrary columns. Refused or accepted,
//! never a panic; a row with a random MAC is never accepted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sharevault_core::envelope::{KekRef, SealedRecord};
use sharevault_core::integrity::IntegrityKey;
use sharevault_core::store::WalletRow;
use sharevault_core::{model, tamper, DataKey};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\u{1}');
    let (meta, id, key) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let _ = model::check_stored_identity(meta, id, key, "EVM");
    let row = WalletRow {
        address: key.to_string(),
        address_key: key.to_string(),
        wallet_id: id.to_string(),
        chain_name: "EVM".into(),
        environment: "fuzz".into(),
        metadata_json: meta.to_string(),
        version: data.len() as i64,
        generation: 1,
        sealed: SealedRecord {
            format: 1,
            alg: 1,
            kek: KekRef { provider: "local".into(), key_id: "k".into(), key_version: "1".into() },
            wrapped_dek: data.to_vec(),
            nonce: Vec::new(),
            ciphertext: Vec::new(),
            // Either digest format (with and without wrap and seal times) must refuse a made-up MAC.
            wrapped_at: data.first().map(|b| i64::from(*b)),
            sealed_at: data.get(1).map(|b| i64::from(*b)),
        },
        mac: Some(data.iter().rev().take(32).copied().collect()),
        sealed_digest: Some(data.iter().take(32).copied().collect()),
        state: None,
    };
    let k = IntegrityKey::derive(&DataKey::from_bytes([2u8; 32]), "fuzz");
    assert!(tamper::check_wallet(&k, &row).is_err(), "a row with a made-up MAC was accepted");
});
