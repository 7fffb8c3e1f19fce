//! The response parser of highlanderd's clients (the plugin, the CLI) on
//! one fuzzed line, then the typed results the CLI reads out of it: what
//! parses re-encodes into what parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::protocol::{LeasesResult, Response, Status, WhoResult};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fuzz_target!(|line: &[u8]| {
    let Ok(response) = Response::decode(line) else { return };
    let text = response.encode();
    assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "{text:?}");
    let again = Response::decode(text.as_bytes()).expect("an encoded response parses");
    assert_eq!((again.v, again.ok, &again.error), (response.v, response.ok, &response.error));
    if let Some(result) = &response.result {
        typed::<Status>(result);
        typed::<WhoResult>(result);
        typed::<LeasesResult>(result);
    }
});

fn typed<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(result: &Value) {
    let Ok(t) = serde_json::from_value::<T>(result.clone()) else { return };
    let back: T = serde_json::from_value(serde_json::to_value(&t).expect("results serialise")).expect("a serialised result parses");
    assert_eq!(back, t);
}
