//! The PCCS certificate verifier's input: the certificate the server presents (any bytes) and
//! the handshake signature over it. A pinned certificate is trusted by its hash whatever it
//! holds, and its signature is then checked against the public key parsed out of it (the
//! x509 parsing is what a hostile server controls); a certificate that is not pinned is refused.
//! Also the certificate file reader (`ca_file`: PEM or DER). Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate_fuzz::take_prefixed;
use rollgate_probe::pccs::{PccsVerifier, cert_sha256, parse_certificates};
use rustls::client::danger::ServerCertVerifier;
use rustls::internal::msgs::codec::Codec;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

fuzz_target!(|data: &[u8]| {
    let _ = parse_certificates(data);
    let Some((&scheme, rest)) = data.split_first() else {
        return;
    };
    // [scheme][u16 len][certificate DER][u16 len][signed message][signature]
    let (der, rest) = take_prefixed(rest);
    let (message, signature) = take_prefixed(rest);
    let der = der.to_vec();
    let cert = CertificateDer::from(der.clone());
    let name = ServerName::try_from("pccs.local").unwrap();
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000));

    let pinned = PccsVerifier::pinned(vec![cert_sha256(&der)]);
    assert!(
        pinned
            .verify_server_cert(&cert, &[], &name, &[], now)
            .is_ok()
    );
    assert_eq!(pinned.seen(), Some(cert_sha256(&der)));
    let other = PccsVerifier::pinned(vec![cert_sha256(b"another certificate")]);
    if der != b"another certificate" {
        assert!(
            other
                .verify_server_cert(&cert, &[], &name, &[], now)
                .is_err()
        );
    }

    let schemes = pinned.supported_verify_schemes();
    let scheme = schemes[scheme as usize % schemes.len()];
    // As on the wire: the scheme, a 16-bit length, the signature (the constructor is private).
    let sig = |s: SignatureScheme| {
        let mut wire = u16::from(s).to_be_bytes().to_vec();
        let body = &signature[..signature.len().min(u16::MAX as usize)];
        wire.extend_from_slice(&(body.len() as u16).to_be_bytes());
        wire.extend_from_slice(body);
        DigitallySignedStruct::read_bytes(&wire).unwrap()
    };
    let _ = pinned.verify_tls13_signature(message, &cert, &sig(scheme));
    let _ = pinned.verify_tls12_signature(message, &cert, &sig(scheme));
    let _ = pinned.verify_tls12_signature(message, &cert, &sig(SignatureScheme::Unknown(0x0909)));

    let from_ca = PccsVerifier::from_ca_certs(&[der.clone()]);
    let _ = from_ca.verify_server_cert(&cert, &[], &name, &[], now);
});
