//! Keys and randomness: age identities and recipients, key files, data-key wrapping.
pub mod age_keys;
pub mod identity_sources;
pub mod inventory;
pub mod stanzas;

/// Fills an array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    // A failing system RNG is not a recoverable condition for a secrets tool.
    #[allow(clippy::expect_used)]
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random number generator failed");
    out
}
