//! Fixed test vectors for every byte format that outlives a process: the audit row hash (with
//! and without the wallet MAC a write records), the AAD a sealed record is bound to, the share
//! encoding, the whole envelope, and the integrity formats (the per-environment key derivation,
//! the sealed-record digest, the wallet row MAC, the audit head MAC). The expected
//! bytes were computed independently (Python `hashlib`/`struct` and the `cryptography` package's
//! AESGCM, from the formats in DESIGN.md and the module docs), not by this code. A change to any
//! of them would make every stored record or audit log unreadable: these tests make it loud.

use sharevault_core::audit::{self, AuditEntry};
use sharevault_core::envelope::{self, Binding};
use sharevault_core::shares::Encoder;
use sharevault_core::DataKey;

fn entry(action: &'static str, wallet_id: Option<&str>, purpose: Option<&str>) -> AuditEntry {
    AuditEntry {
        at_ms: 1_700_000_000_000,
        environment: "test".into(),
        actor: "cargo".into(),
        action,
        address: "0xabc".into(),
        wallet_id: wallet_id.map(str::to_string),
        purpose: purpose.map(str::to_string),
        outcome: "ok".into(),
        wallet_mac: None,
    }
}

#[test]
fn the_audit_row_hash() {
    let first = audit::ChainHead::genesis().link(&entry("store", None, Some("conformance")));
    assert_eq!((first.seq, first.prev_hash.as_slice()), (1, &audit::GENESIS[..]));
    assert_eq!(hex::encode(&first.hash), "dbcb768f1fe7eec4cccc4d345bdcecacb5d02f06614ea105bb3f81148dea1fd0");
    let second = first.head().link(&entry("hydrate", Some("w-1"), None));
    assert_eq!(second.seq, 2);
    assert_eq!(hex::encode(&second.hash), "38b3b59f0ac133275930929208ea84f715ca865d5739118b1bfef54c8c3ccac7");
}

const BINDING: Binding<'static> =
    Binding { environment: "test", wallet_id: "w-1", address_key: "0xab", chain_name: "EVM", generation: 2 };

#[test]
fn the_record_aad() {
    assert_eq!(
        hex::encode(BINDING.aad()),
        "0000001673686172657661756c742f656e76656c6f70652f7631000000047465737400000003772d31\
         00000004307861620000000345564d0000000000000002"
    );
}

const SHARES: &str = "01070100000008050000000b00000073656372657453686172650508000000733363726574c3a906000000\
                      7075626b65790603000000010203010000006e04000000000000f83f020000006f6b03010000007800";

#[test]
fn the_share_encoding() {
    let mut e = Encoder::new();
    e.begin_array(1).unwrap();
    e.begin_object(5).unwrap();
    e.key("secretShare").unwrap();
    e.string("s3cret\u{e9}").unwrap();
    e.key("pubkey").unwrap();
    e.bytes(&[1, 2, 3]).unwrap();
    e.key("n").unwrap();
    e.number(1.5).unwrap();
    e.key("ok").unwrap();
    e.boolean(true).unwrap();
    e.key("x").unwrap();
    e.null().unwrap();
    assert_eq!(hex::encode(e.finish().as_slice()), SHARES);
}

#[test]
fn the_sealed_record_opens_and_binds() {
    let key = DataKey::from_bytes(std::array::from_fn(|i| i as u8));
    let nonce = [0x24u8; 12];
    let ct = hex::decode(
        "07f6b8cfe77faa05c715102798a43f45d47df8901cf1e9de4146b02fd5d1371e456dcebcf102218a18926e6262b685\
         0f106b64586e4c9346aea129b8b530460a82fd80fcd5ed770a437deca2e91f106f0b0fd9185b6c3820105c22faf9a63aa72274e3f2",
    )
    .unwrap();
    let plain = envelope::open(&key, &BINDING, &nonce, &ct).unwrap();
    assert_eq!(hex::encode(plain.as_slice()), SHARES);
    let moved = Binding { generation: 3, ..BINDING };
    assert!(envelope::open(&key, &moved, &nonce, &ct).is_err());
}

fn sealed_fixture() -> envelope::SealedRecord {
    envelope::SealedRecord {
        format: 1,
        alg: 1,
        kek: envelope::KekRef { provider: "local".into(), key_id: "k".into(), key_version: "1".into() },
        wrapped_dek: vec![0x11; 60],
        nonce: vec![0x22; 12],
        ciphertext: vec![0x33; 48],
        wrapped_at: None,
        sealed_at: None,
    }
}

#[test]
fn the_audit_row_hash_of_a_write_covers_the_wallet_mac() {
    let mut e = entry("store", Some("w-1"), None);
    e.wallet_mac = Some(vec![0x5a; 32]);
    let link = audit::ChainHead::genesis().link(&e);
    assert_eq!(hex::encode(&link.hash), "7c9ee4872e6d2baf17ae73e4b122bc4fed36bc844a706463b09a9c09238afb5c");
}

#[test]
fn the_sealed_digest_and_the_wallet_row_mac() {
    use sharevault_core::integrity::{sealed_digest, IntegrityKey, RowFacts};
    let digest = sealed_digest(&sealed_fixture());
    assert_eq!(hex::encode(&digest), "208765dff1d7a68f6730c5d1d5a56e5309caf10e8f2a2cdc8fb03d4f79f6e60f");
    // HKDF-SHA-256(salt "sharevault/integrity-key/v1", the root key, info = environment).
    let key = IntegrityKey::derive(&DataKey::from_bytes([7u8; 32]), "test");
    let facts = RowFacts {
        environment: "test",
        wallet_id: "w-1",
        address: "0xAbC",
        address_key: "0xabc",
        chain_name: "EVM",
        metadata_json: r#"{"walletId":"w-1"}"#,
        generation: 2,
        version: 3,
        sealed_digest: &digest,
    };
    assert_eq!(hex::encode(key.row_tag(&facts)), "90d33b496e07c922b2c6ad0c8d12cc48175e6e4f47f300d1731b5b4f06f93c9e");
}

#[test]
fn the_audit_head_mac() {
    use sharevault_core::integrity::IntegrityKey;
    let key = IntegrityKey::derive(&DataKey::from_bytes([7u8; 32]), "test");
    assert_eq!(
        hex::encode(key.head_tag(0, &[0u8; 32])),
        "24d4f747615979c8b5c74180c7f6f3e287f83f85730478133e3625509a063c18"
    );
    assert_eq!(
        hex::encode(key.head_tag(5, &[0xab; 32])),
        "5dc77af7beac4d805e9b339585506219410243fe53320b8ee25eaf19636ae80b"
    );
    // An audit row's own MAC: the same position under its own tag (computed in Python's hmac),
    // so no row's MAC is a head's.
    assert_eq!(
        hex::encode(key.audit_row_tag(5, &[0xab; 32])),
        "d7cd1bf47e2f4bbbac3b7fb90342de01b8039f3ec66588f4562739944f845739"
    );
    assert!(!key.head_ok("test", 5, &[0xab; 32], &key.audit_row_tag(5, &[0xab; 32])));
}

/// A record with its wrap and seal times (schema 4 on) is digested under a tag of its own, the
/// times first (computed in Python's hashlib).
#[test]
fn the_sealed_digest_with_wrap_and_seal_times() {
    use sharevault_core::integrity::sealed_digest;
    let s = envelope::SealedRecord {
        wrapped_at: Some(1_700_000_000_000),
        sealed_at: Some(1_600_000_000_000),
        ..sealed_fixture()
    };
    assert_eq!(hex::encode(sealed_digest(&s)), "d97095e503af58926bb736f670cffd22a968ccf98edc7b4b0f2710a562c284ea");
    // The times removed from a row: another digest, so its MAC fails.
    assert_ne!(sealed_digest(&s), sealed_digest(&sealed_fixture()));
}

/// A keyring entry's MAC (computed in Python's hmac over the HKDF-derived key).
#[test]
fn the_keyring_entry_mac() {
    use sharevault_core::integrity::{IntegrityKey, KeyringFacts};
    let key = IntegrityKey::derive(&DataKey::from_bytes([7u8; 32]), "test");
    let facts = KeyringFacts {
        environment: "test",
        provider: "aws",
        key_id: "arn:aws:kms:eu-west-1:111122223333:key/k",
        key_version: "m-2",
        state: "decrypt-only",
        added_at: 1_700_000_000_000,
        changed_at: 1_700_000_500_000,
        version: 3,
        reencrypt_before: -1,
    };
    let tag = key.keyring_tag(&facts);
    assert_eq!(hex::encode(&tag), "a040386ec38b7e2a6023e574641ac3f8ec125129f3c2d48215ae6a16eb22dd90");
    assert!(!key.keyring_ok(&KeyringFacts { state: "retired", ..facts }, &tag));
}
