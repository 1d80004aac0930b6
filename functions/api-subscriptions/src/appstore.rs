//! App Store signed data (JWS, ES256, `x5c` certificate chain), as Apple
//! signs transactions and App Store Server Notifications v2.
//!
//! A JWS is accepted when: its header names ES256 and carries an `x5c`
//! chain of at least two certificates; each certificate is signed by the
//! next and is valid at the time of checking; the last one is byte for byte
//! one of the configured roots (Apple Root CA - G3 in production, a test
//! root in the tests); the intermediate is a CA carrying Apple's WWDR
//! marker extension and the leaf Apple's App Store receipt-signing marker;
//! and the signature over `header.payload` verifies with the leaf's key.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;
use x509_parser::prelude::*;

/// Apple's marker on the leaf ("Mac App Store Receipt Signing").
pub const LEAF_OID: &str = "1.2.840.113635.100.6.11.1";
/// Apple's marker on the intermediate (Apple WWDR CA).
pub const INTERMEDIATE_OID: &str = "1.2.840.113635.100.6.2.1";

/// Why a JWS was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwsError {
    /// Not three base64url parts, bad JSON, or an unexpected header.
    #[error("malformed signed data: {0}")]
    Malformed(String),
    /// The certificate chain is broken, expired or not Apple's.
    #[error("certificate chain rejected: {0}")]
    Chain(String),
    /// The signature does not match the payload.
    #[error("signature does not verify")]
    Signature,
}

/// Verifies JWS against configured roots.
#[derive(Clone)]
pub struct Verifier {
    roots: Vec<Vec<u8>>,
}

fn b64url(part: &str, what: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| JwsError::Malformed(format!("{what} is not base64url: {e}")))
}

fn has_extension(cert: &X509Certificate<'_>, oid: &str) -> bool {
    cert.extensions()
        .iter()
        .any(|e| e.oid.to_id_string() == oid)
}

impl Verifier {
    /// Trusts these root certificates (DER).
    pub fn new(roots: Vec<Vec<u8>>) -> Self {
        Self { roots }
    }

    /// Reads roots from text: PEM blocks, or base64 DER separated by
    /// commas or whitespace.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let mut roots = Vec::new();
        if text.contains("-----BEGIN") {
            for block in text.split("-----BEGIN CERTIFICATE-----").skip(1) {
                let body = block
                    .split("-----END CERTIFICATE-----")
                    .next()
                    .unwrap_or_default();
                let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
                roots.push(STANDARD.decode(b64).map_err(|e| format!("bad PEM: {e}"))?);
            }
        } else {
            for part in text.split(|c: char| c == ',' || c.is_whitespace()) {
                if !part.is_empty() {
                    roots.push(
                        STANDARD
                            .decode(part)
                            .map_err(|e| format!("bad base64: {e}"))?,
                    );
                }
            }
        }
        for r in &roots {
            parse_x509_certificate(r).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("no certificate".into());
        }
        Ok(Self { roots })
    }

    /// Verifies `jws` as of `now`; returns its payload.
    pub fn verify(&self, jws: &str, now: DateTime<Utc>) -> Result<Value, JwsError> {
        let parts: Vec<&str> = jws.trim().split('.').collect();
        let [h, p, s] = parts[..] else {
            return Err(JwsError::Malformed(
                "expected three dot-separated parts".into(),
            ));
        };
        let header: Value = serde_json::from_slice(&b64url(h, "header")?)
            .map_err(|e| JwsError::Malformed(format!("header is not JSON: {e}")))?;
        if header["alg"] != "ES256" {
            return Err(JwsError::Malformed(format!(
                "alg {} is not ES256",
                header["alg"]
            )));
        }
        let x5c: Vec<Vec<u8>> = header["x5c"]
            .as_array()
            .ok_or_else(|| JwsError::Malformed("header has no x5c chain".into()))?
            .iter()
            .map(|c| {
                c.as_str()
                    .and_then(|c| STANDARD.decode(c).ok())
                    .ok_or_else(|| JwsError::Malformed("x5c entry is not base64".into()))
            })
            .collect::<Result<_, _>>()?;
        if x5c.len() < 2 {
            return Err(JwsError::Chain(
                "x5c needs the leaf, an intermediate and the root".into(),
            ));
        }
        let certs: Vec<X509Certificate<'_>> = x5c
            .iter()
            .map(|der| {
                parse_x509_certificate(der)
                    .map(|(_, c)| c)
                    .map_err(|e| JwsError::Chain(format!("unreadable certificate: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let top = x5c.last().expect("two or more");
        if !self.roots.iter().any(|r| r == top) {
            return Err(JwsError::Chain(
                "the chain does not end at a trusted root".into(),
            ));
        }
        let at = ASN1Time::from_timestamp(now.timestamp())
            .map_err(|e| JwsError::Chain(format!("time: {e}")))?;
        for (i, cert) in certs.iter().enumerate() {
            if !cert.validity().is_valid_at(at) {
                return Err(JwsError::Chain(format!(
                    "certificate {i} ({}) is not valid now (valid {} to {})",
                    cert.subject(),
                    cert.validity().not_before,
                    cert.validity().not_after
                )));
            }
            let issuer = certs.get(i + 1).unwrap_or(cert);
            if i + 1 < certs.len() && !issuer.is_ca() {
                return Err(JwsError::Chain(format!(
                    "certificate {} is not a CA",
                    i + 1
                )));
            }
            cert.verify_signature(Some(issuer.public_key()))
                .map_err(|_| {
                    JwsError::Chain(format!("certificate {i} is not signed by its issuer"))
                })?;
        }
        if !has_extension(&certs[0], LEAF_OID) {
            return Err(JwsError::Chain(
                "the leaf is not an App Store signing certificate".into(),
            ));
        }
        if !has_extension(&certs[1], INTERMEDIATE_OID) {
            return Err(JwsError::Chain(
                "the intermediate is not Apple's WWDR CA".into(),
            ));
        }
        let sig = b64url(s, "signature")?;
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            certs[0].public_key().subject_public_key.data.as_ref(),
        );
        key.verify(format!("{h}.{p}").as_bytes(), &sig)
            .map_err(|_| JwsError::Signature)?;
        serde_json::from_slice(&b64url(p, "payload")?)
            .map_err(|e| JwsError::Malformed(format!("payload is not JSON: {e}")))
    }
}
