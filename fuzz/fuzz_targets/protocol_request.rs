//! highlanderd's request parser on one fuzzed line: a request it accepts
//! encodes back to a line that parses to the same request; a refusal is a
//! typed error whose response is one line that clients parse back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::lock_state;
use proto::protocol::{Request, Response};

fuzz_target!(|line: &[u8]| {
    match Request::decode(line) {
        Ok(req) => {
            let again = req.encode();
            assert!(!again.contains('\n'), "{again:?}");
            assert_eq!(Request::decode(again.as_bytes()).as_ref(), Ok(&req), "{again}");
            // What the daemon parses next out of an accepted request.
            let state = match &req {
                Request::Register(r) => {
                    let _ = proto::uuid::parse(&r.uuid);
                    r.state.as_deref()
                }
                Request::Acquire(a) => a.state.as_deref(),
                _ => None,
            };
            if let Some(s) = state {
                let _ = lock_state::decode(s);
            }
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            let response = Response::err(e);
            let text = response.encode();
            assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "{text:?}");
            assert_eq!(Response::decode(text.as_bytes()).ok(), Some(response));
        }
    }
});
