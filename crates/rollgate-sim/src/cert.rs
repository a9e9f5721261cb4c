//! Self-signed certificates for the simulated PCCS, of the two kinds found in the field:
//! a modern X.509 v3 certificate with `subjectAltName=IP:127.0.0.1`, and the X.509 **version 1**
//! certificate without extensions that the usual PCCS recipe (`openssl x509 -req -signkey`)
//! makes. rcgen cannot emit v1, so that one is assembled here in DER by hand and signed with the
//! same ECDSA P-256 key type.

use std::str::FromStr;

use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData, SanType, SigningKey};
use sha2::{Digest, Sha256};

use crate::errors::SimError;

/// Which kind of certificate the PCCS presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertKind {
    /// X.509 v3 with SAN IP:127.0.0.1 and DNS:localhost: works with an ordinary trust store.
    #[default]
    V3San,
    /// X.509 v1 without any extension (no SAN): rustls/webpki refuse it, pin it instead.
    V1NoSan,
}

impl CertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::V3San => "v3",
            CertKind::V1NoSan => "v1",
        }
    }
}

impl FromStr for CertKind {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v3" | "v3-san" | "modern" => Ok(CertKind::V3San),
            "v1" | "v1-nosan" | "legacy" => Ok(CertKind::V1NoSan),
            other => Err(SimError::UnknownVersion {
                component: "pccs certificate kind",
                version: other.to_owned(),
                known: "v3, v1".into(),
            }),
        }
    }
}

/// A generated certificate and its private key.
#[derive(Clone)]
pub struct PccsCert {
    kind: CertKind,
    der: Vec<u8>,
    key_pkcs8_der: Vec<u8>,
    spki_der: Vec<u8>,
}

impl std::fmt::Debug for PccsCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PccsCert")
            .field("kind", &self.kind)
            .field("sha256", &self.sha256_hex())
            .finish_non_exhaustive()
    }
}

impl PccsCert {
    /// Generates a fresh key and a self-signed certificate of `kind` for 127.0.0.1.
    pub fn generate(kind: CertKind) -> Result<PccsCert, SimError> {
        let key = KeyPair::generate()?;
        let der = match kind {
            CertKind::V3San => {
                let mut params = CertificateParams::new(Vec::<String>::new())?;
                params
                    .distinguished_name
                    .push(DnType::CommonName, "127.0.0.1");
                params.subject_alt_names = vec![
                    SanType::IpAddress([127, 0, 0, 1].into()),
                    SanType::DnsName("localhost".try_into()?),
                ];
                params.self_signed(&key)?.der().to_vec()
            }
            CertKind::V1NoSan => v1_self_signed(&key, "127.0.0.1")?,
        };
        Ok(PccsCert {
            kind,
            der,
            key_pkcs8_der: key.serialize_der(),
            spki_der: key.subject_public_key_info(),
        })
    }

    /// Rebuilds a certificate saved with [`PccsCert::der`] and [`PccsCert::key_der`] (so a
    /// restarted PCCS keeps its pin). The kind is read from the certificate itself.
    pub fn from_der(cert_der: &[u8], key_pkcs8_der: &[u8]) -> Result<PccsCert, SimError> {
        let key = KeyPair::try_from(key_pkcs8_der)?;
        Ok(PccsCert {
            kind: if is_v1(cert_der) {
                CertKind::V1NoSan
            } else {
                CertKind::V3San
            },
            der: cert_der.to_vec(),
            key_pkcs8_der: key_pkcs8_der.to_vec(),
            spki_der: key.subject_public_key_info(),
        })
    }

    pub fn kind(&self) -> CertKind {
        self.kind
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        pem("CERTIFICATE", &self.der)
    }

    /// The private key, PKCS#8 DER.
    pub fn key_der(&self) -> &[u8] {
        &self.key_pkcs8_der
    }

    /// The private key, PEM.
    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", &self.key_pkcs8_der)
    }

    /// The certificate's SubjectPublicKeyInfo, DER (to verify handshake signatures against a
    /// pinned v1 certificate, which webpki cannot parse).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the DER certificate: the pin (`pin_sha256`).
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }

    /// Lowercase hex of [`PccsCert::sha256`].
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256())
    }
}

/// Skips a DER tag and length, returning the offset of the content.
fn content_start(der: &[u8], at: usize) -> Option<usize> {
    let len = *der.get(at + 1)?;
    Some(
        at + 2
            + if len & 0x80 != 0 {
                (len & 0x7f) as usize
            } else {
                0
            },
    )
}

/// A v1 certificate's TBSCertificate starts with the serial INTEGER instead of `[0] version`.
fn is_v1(der: &[u8]) -> bool {
    content_start(der, 0)
        .and_then(|tbs| content_start(der, tbs))
        .and_then(|first| der.get(first))
        == Some(&0x02)
}

// --- a minimal DER writer, enough for one certificate --------------------------------------

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// ecdsa-with-SHA256 (1.2.840.10045.4.3.2), no parameters.
const ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

fn name(common_name: &str) -> Vec<u8> {
    // Name ::= SEQUENCE OF SET OF AttributeTypeAndValue; one RDN, CN (2.5.4.3) as UTF8String.
    let atv = seq(&[
        &[0x06, 0x03, 0x55, 0x04, 0x03],
        &tlv(0x0c, common_name.as_bytes()),
    ]);
    seq(&[&tlv(0x31, &atv)])
}

fn utc_time(unix: i64) -> Vec<u8> {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let s = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        y % 100,
        m,
        d,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    tlv(0x17, s.as_bytes())
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An X.509 v1 certificate: TBSCertificate without the `[0] version` field and without
/// extensions, exactly the shape `openssl x509 -req -signkey` produces.
fn v1_self_signed(key: &KeyPair, common_name: &str) -> Result<Vec<u8>, SimError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut serial: [u8; 16] = Sha256::digest(key.subject_public_key_info())[..16]
        .try_into()
        .unwrap_or([1; 16]);
    serial[0] &= 0x7f; // positive INTEGER
    serial[0] |= 0x01; // and no leading zero byte to strip
    let subject = name(common_name);
    let tbs = seq(&[
        &tlv(0x02, &serial),
        ECDSA_SHA256,
        &subject,
        &seq(&[&utc_time(now - 86_400), &utc_time(now + 365 * 86_400)]),
        &subject,
        &key.subject_public_key_info(),
    ]);
    let signature = key.sign(&tbs)?;
    let mut bits = vec![0u8]; // no unused bits
    bits.extend_from_slice(&signature);
    Ok(seq(&[&tbs, ECDSA_SHA256, &tlv(0x03, &bits)]))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_base64() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn v1_certificate_has_no_version_field() {
        let cert = PccsCert::generate(CertKind::V1NoSan).unwrap();
        // The first element of the TBSCertificate is the serial INTEGER (0x02), not the
        // [0] EXPLICIT version tag (0xa0) a v3 certificate has.
        assert!(is_v1(cert.der()));
        let v3 = PccsCert::generate(CertKind::V3San).unwrap();
        assert!(!is_v1(v3.der()));
        let again = PccsCert::from_der(cert.der(), cert.key_der()).unwrap();
        assert_eq!(again.kind(), CertKind::V1NoSan);
        assert_eq!(again.sha256_hex(), cert.sha256_hex());
        assert!(cert.pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(cert.sha256_hex().len(), 64);
    }
}
