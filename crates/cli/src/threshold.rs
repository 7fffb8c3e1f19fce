//! Threshold ranges in the monitoring-plugins syntax
//! (<https://www.monitoring-plugins.org/doc/guidelines.html#THRESHOLDFORMAT>):
//! `10` alerts outside 0..10, `10:` below 10, `~:10` above 10, `10:20`
//! outside 10..20, `@10:20` inside 10..20 (ends included).

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq)]
pub struct Range {
    start: f64,
    end: f64,
    /// `@`: alert inside the range instead of outside.
    inside: bool,
    /// As given, for the perfdata's warn/crit fields.
    text: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("threshold {text:?}: {why}; use N, N:, ~:N, N:M or @N:M (monitoring-plugins range syntax)")]
pub struct RangeError {
    text: String,
    why: &'static str,
}

impl Range {
    /// `0..=end`: alert above `end` (or below 0).
    pub fn up_to(end: f64) -> Range {
        Range { start: 0.0, end, inside: false, text: format_number(end) }
    }

    /// Whether `value` is outside the range (inside, for `@`).
    pub fn alerts(&self, value: f64) -> bool {
        let within = self.start <= value && value <= self.end;
        within == self.inside
    }
}

/// A number as perfdata wants it: no exponent, no trailing `.0`.
pub fn format_number(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl FromStr for Range {
    type Err = RangeError;
    fn from_str(text: &str) -> Result<Range, RangeError> {
        let fail = |why| RangeError { text: text.to_owned(), why };
        let (inside, body) = match text.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| fail("not a number"));
        let (start, end) = match body.split_once(':') {
            None if body.is_empty() => return Err(fail("empty")),
            None => (0.0, number(body)?),
            Some(("~", end)) => (f64::NEG_INFINITY, if end.is_empty() { f64::INFINITY } else { number(end)? }),
            Some((start, "")) => (number(start)?, f64::INFINITY),
            Some((start, end)) => (number(start)?, number(end)?),
        };
        if start > end {
            return Err(fail("the start is above the end"));
        }
        Ok(Range { start, end, inside, text: text.to_owned() })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Range {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_five_forms() {
        // N: alert outside 0..N.
        assert!(!r("10").alerts(0.0) && !r("10").alerts(10.0) && r("10").alerts(10.5) && r("10").alerts(-1.0));
        // N: alert below N.
        assert!(r("10:").alerts(9.9) && !r("10:").alerts(10.0) && !r("10:").alerts(1e12));
        // ~:N: alert above N, however negative.
        assert!(!r("~:10").alerts(-1e12) && r("~:10").alerts(10.1));
        // N:M: alert outside N..M.
        assert!(r("10:20").alerts(9.0) && !r("10:20").alerts(15.0) && r("10:20").alerts(21.0));
        // @N:M: alert inside N..M, ends included.
        assert!(r("@10:20").alerts(10.0) && r("@10:20").alerts(20.0) && !r("@10:20").alerts(21.0) && !r("@10:20").alerts(9.0));
        assert!(r("@5").alerts(3.0) && !r("@5").alerts(6.0));
        assert!(!r("~:").alerts(1.0) && r("1.5:2.5").alerts(2.6));
    }

    #[test]
    fn shown_as_given() {
        assert_eq!(r("@10:20").to_string(), "@10:20");
        assert_eq!(Range::up_to(5000.0).to_string(), "5000");
        assert_eq!(format_number(812.5), "812.5");
        assert_eq!(format_number(0.0), "0");
    }

    #[test]
    fn bad_ranges_say_why() {
        for (text, why) in [("", "empty"), ("@", "empty"), ("abc", "not a number"), ("1:x", "not a number"), ("20:10", "start is above"), ("inf", "not a number"), ("1:2:3", "not a number")] {
            let e = text.parse::<Range>().unwrap_err();
            assert!(e.to_string().contains(why) && e.to_string().contains("N:M"), "{text:?}: {e}");
        }
    }
}
