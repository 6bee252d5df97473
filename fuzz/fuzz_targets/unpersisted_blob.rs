//! The sealed unpersisted-state blob (handed back by the caller to `recoverSealed`) on arbitrary
//! bytes: decoded or refused, never a panic; what decodes encodes back to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sharevault_core::unpersisted::Unpersisted;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = Unpersisted::decode(data) {
        assert_eq!(state.encode(), data, "a decoded blob re-encodes to other bytes");
    }
});
