//! The two signed tokens the senders make: Apple's ES256 provider token and
//! Google's RS256 service-account assertion (RFC 7519 compact form).

use anyhow::Context;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use serde_json::Value;

/// The DER inside a PEM block (`-----BEGIN PRIVATE KEY-----`, PKCS#8): what
/// Apple's `.p8` file and a Google service account's `private_key` hold.
pub fn pem_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    anyhow::ensure!(!body.is_empty(), "no PEM body");
    STANDARD.decode(body).context("the PEM body is not base64")
}

/// A signing key of one of the two algorithms.
pub enum Signer {
    /// ES256 (P-256, the 64-byte r||s signature JWS wants).
    Es256(EcdsaKeyPair),
    /// RS256 (PKCS#1 v1.5 with SHA-256).
    Rs256(RsaKeyPair),
}

impl Signer {
    /// An ES256 key from a PKCS#8 PEM (Apple's `.p8`).
    pub fn es256(pem: &str) -> anyhow::Result<Self> {
        let der = pem_der(pem)?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
                .map_err(|e| anyhow::anyhow!("not a P-256 PKCS#8 key: {e}"))?;
        Ok(Signer::Es256(key))
    }

    /// An RS256 key from a PKCS#8 PEM (a service account's `private_key`).
    pub fn rs256(pem: &str) -> anyhow::Result<Self> {
        let der = pem_der(pem)?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| anyhow::anyhow!("not an RSA PKCS#8 key: {e}"))?;
        Ok(Signer::Rs256(key))
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Es256(_) => "ES256",
            Signer::Rs256(_) => "RS256",
        }
    }

    /// `header.claims.signature`, the header completed with `alg`.
    pub fn sign(&self, mut header: Value, claims: &Value) -> anyhow::Result<String> {
        header["alg"] = Value::from(self.alg());
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            Signer::Es256(k) => k
                .sign(&rng, input.as_bytes())
                .map_err(|_| anyhow::anyhow!("ES256 signing failed"))?
                .as_ref()
                .to_vec(),
            Signer::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .map_err(|_| anyhow::anyhow!("RS256 signing failed"))?;
                sig
            }
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}
