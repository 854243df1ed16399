#![no_main]
//! `ClientFrame::decode`, which reads every WebSocket text frame a client
//! sends, and `ServerFrame::decode` (the Rust client's side): never panic; a
//! decoded frame re-encodes to JSON that decodes to the same frame; an error
//! always becomes an encodable `error` frame.

use im_core::protocol::{ClientFrame, ServerFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ClientFrame::decode(data) {
        Ok(frame) => {
            let json = frame.encode();
            let again = ClientFrame::decode(json.as_bytes());
            assert_eq!(again.as_ref(), Ok(&frame), "round trip through {json}");
        }
        Err(e) => {
            let json = e.to_frame().encode();
            assert!(
                ServerFrame::decode(json.as_bytes()).is_ok(),
                "the error frame {json} does not decode"
            );
        }
    }
    if let Ok(frame) = ServerFrame::decode(data) {
        let json = frame.encode();
        let again = ServerFrame::decode(json.as_bytes());
        assert_eq!(again.as_ref(), Ok(&frame), "round trip through {json}");
    }
});
