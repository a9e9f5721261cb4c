//! The encryption-key probe: the operator publishes its current compressed secp256k1 public
//! key, which clients encrypt requests to. Accepted forms: plain-text hex or a JSON string, with
//! or without `0x`, optionally inside a JSON object under `key`/`encryptionKey`. The key must be
//! 33 bytes, start with 0x02 or 0x03, and decompress to a point on the curve.

use rollgate_core::config::EncryptionKeyProbe;
use rollgate_core::redact::redact_url;
use rollgate_core::text::shorten;
use serde_json::{Value, json};

use crate::errors::ProbeError;
use crate::http::{HttpClient, require_success};
use crate::outcome::{Outcome, show_value};

/// Validate a key as text; the normalised `0x…` form, or why it is not a key.
pub fn parse_key(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| "the body is not text".to_string())?
        .trim();
    let candidate = match serde_json::from_str::<Value>(text) {
        Ok(Value::String(s)) => s,
        Ok(Value::Object(o)) => match ["key", "encryptionKey", "encryption_key", "publicKey"]
            .iter()
            .find_map(|k| o.get(*k))
        {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(format!(
                    "a JSON object without a key string ({})",
                    show_value(&Value::Object(o), 60)
                ));
            }
        },
        Ok(other) => return Err(format!("JSON {} is not a key", show_value(&other, 60))),
        Err(_) => text.to_string(),
    };
    let hex_text = candidate.trim();
    let hex_text = hex_text
        .strip_prefix("0x")
        .or_else(|| hex_text.strip_prefix("0X"))
        .unwrap_or(hex_text);
    if hex_text.is_empty() {
        return Err("the key is empty".into());
    }
    let bytes =
        hex::decode(hex_text).map_err(|_| format!("`{}` is not hex", shorten(hex_text, 41)))?;
    if bytes.len() != 33 {
        return Err(format!(
            "the key is {} bytes, a compressed secp256k1 key is 33",
            bytes.len()
        ));
    }
    if bytes[0] != 0x02 && bytes[0] != 0x03 {
        return Err(format!(
            "the key starts with 0x{:02x}, a compressed key starts with 0x02 or 0x03",
            bytes[0]
        ));
    }
    k256::PublicKey::from_sec1_bytes(&bytes)
        .map_err(|_| "the key is not a point on secp256k1".to_string())?;
    Ok(format!("0x{}", hex::encode(bytes)))
}

/// Fetch and judge the key; `Err` when the endpoint could not be read at all (the caller
/// decides whether that is transient, e.g. during a restart).
pub async fn encryption_key(
    http: &HttpClient,
    probe: &EncryptionKeyProbe,
) -> Result<Outcome, ProbeError> {
    let endpoint = redact_url(&probe.url);
    let fetched = http.get(&probe.url).await?;
    require_success(&probe.url, &fetched)?;
    Ok(match parse_key(&fetched.body) {
        Ok(key) => Outcome::pass(
            format!("{endpoint}: compressed secp256k1 key {}…", &key[..12]),
            json!({"key": key}),
        ),
        Err(why) => Outcome::fail(
            format!("{endpoint}: not a compressed secp256k1 public key: {why}"),
            Value::Null,
        ),
    })
}

/// The check form of [`encryption_key`].
pub async fn probe_encryption_key(http: &HttpClient, probe: &EncryptionKeyProbe) -> Outcome {
    encryption_key(http, probe)
        .await
        .unwrap_or_else(Outcome::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The generator point G, compressed: a valid key.
    const G: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

    #[test]
    fn forms() {
        let want = format!("0x{G}");
        for body in [
            G.to_string(),
            format!("0x{G}"),
            format!("\"{G}\""),
            format!("\"0x{G}\"\n"),
            format!("{{\"key\": \"{G}\"}}"),
        ] {
            assert_eq!(
                parse_key(body.as_bytes()).as_deref(),
                Ok(want.as_str()),
                "{body}"
            );
        }
    }

    #[test]
    fn malformed() {
        let cases = [
            ("", "empty"),
            ("zz", "not hex"),
            ("0x0279be", "3 bytes"),
            (&format!("04{}", &G[2..]), "starts with 0x04"),
            ("123", "JSON 123"),
            ("{\"k\":1}", "without a key"),
        ];
        for (body, want) in cases {
            let err = parse_key(body.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{body}: {err}");
        }
        // 33 bytes with a valid prefix but an x with no curve point: x = 5 has no y on secp256k1.
        let bad = format!("02{:064x}", 5);
        assert!(
            parse_key(bad.as_bytes())
                .unwrap_err()
                .contains("not a point")
        );
        assert!(parse_key(&[0xff, 0xfe]).unwrap_err().contains("not text"));
    }
}
