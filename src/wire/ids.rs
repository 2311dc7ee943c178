//! JSON-RPC ids and progress tokens as the bridge decodes them from a line: rmcp's
//! `NumberOrString` rules, without the `serde_json::Value` that rmcp's own decoder goes
//! through. Every decoder of a client's or an upstream's line that reads an id on the
//! fast paths uses [`number_or_string`], so an id means the same on every path.

use rmcp::model::NumberOrString;
use serde::Deserializer;

/// Decodes a JSON-RPC id or a progress token as rmcp's `NumberOrString` does (an
/// integer, also written in float form, or a string), without the `serde_json::Value`
/// that rmcp's decoder goes through. For `#[serde(deserialize_with)]`.
pub fn number_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NumberOrString, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = NumberOrString;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer or a string")
        }
        fn visit_i64<E>(self, number: i64) -> Result<Self::Value, E> {
            Ok(NumberOrString::Number(number))
        }
        fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<Self::Value, E> {
            i64::try_from(number)
                .map(NumberOrString::Number)
                .map_err(|_| E::custom("Number too large for i64"))
        }
        fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<Self::Value, E> {
            // `1.0` and `1e2` are integers written in float form; 2^53 and above are
            // not exact.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            (number.fract() == 0.0 && number.abs() < EXACT)
                .then_some(NumberOrString::Number(number as i64))
                .ok_or_else(|| E::custom("Expected an integer"))
        }
        fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
            Ok(NumberOrString::String(text.into()))
        }
    }
    deserializer.deserialize_any(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens_decode_as_rmcp_decodes_them() {
        for text in [
            "0",
            "7",
            "-3",
            "1000000005",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "18446744073709551616",
            "1.0",
            "1e2",
            "-0",
            "1.5",
            "9007199254740992.0",
            "9007199254740991.0",
            r#""x""#,
            r#""\u00e9\n""#,
            r#""""#,
            "null",
            "true",
            "[1]",
            "{}",
        ] {
            let ours = number_or_string(&mut serde_json::Deserializer::from_str(text)).ok();
            let rmcp = serde_json::from_str::<NumberOrString>(text).ok();
            assert_eq!(ours, rmcp, "{text}");
        }
    }
}
