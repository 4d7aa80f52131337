//! Shamir secret sharing over GF(2^8), byte-compatible with sops' key groups
//! (`shamir/shamir.go`, a fork of HashiCorp Vault's implementation).
//!
//! A share is the evaluation of one random polynomial per secret byte at a fixed
//! x, followed by that x as the last byte. Unlike Vault, sops does not shuffle the
//! x coordinates: share `i` (0-based key group index) always uses x = `i + 1`.
//!
//! Field: GF(2^8) with the AES reduction polynomial x^8 + x^4 + x^3 + x + 1 (0x11B).
//! Arithmetic avoids lookup tables and data-dependent branches (multiplication is a
//! masked shift-and-add, inversion a fixed addition chain for a^254), so timing does
//! not depend on secret bytes as far as the Rust source goes; the compiler gives no
//! formal constant-time guarantee. Temporary buffers holding secret material are
//! zeroized; the returned shares / secret are the caller's to protect.

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Errors from [`split`] and [`combine`]. Messages follow Vault/sops' wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShamirError {
    #[error("parts cannot be less than threshold")]
    PartsLessThanThreshold,
    #[error("parts cannot exceed 255")]
    TooManyParts,
    #[error("threshold must be at least 2")]
    ThresholdTooSmall,
    #[error("cannot split an empty secret")]
    EmptySecret,
    #[error("less than two parts cannot be used to reconstruct the secret")]
    TooFewParts,
    #[error("parts must be at least two bytes")]
    PartTooShort,
    #[error("all parts must be the same length")]
    UnequalLengths,
    #[error("duplicate part detected")]
    DuplicatePart,
    #[error("failed to generate random polynomial coefficients")]
    Random,
}

/// Addition (and subtraction) in GF(2^8).
#[inline]
fn add(a: u8, b: u8) -> u8 {
    a ^ b
}

/// Multiplication in GF(2^8) mod 0x11B without branches or tables.
#[inline]
fn mul(a: u8, b: u8) -> u8 {
    let mut r: u8 = 0;
    // Walk b's bits from the top: r = r*x (reduced) + bit*a. `0u8.wrapping_sub(bit)`
    // turns a 0/1 bit into a 0x00/0xFF mask, so no branch depends on the operands.
    for i in (0..8).rev() {
        let bit = (b >> i) & 1;
        let carry = r >> 7;
        r = (r << 1) ^ (0u8.wrapping_sub(carry) & 0x1B) ^ (0u8.wrapping_sub(bit) & a);
    }
    r
}

/// Multiplicative inverse a^254 (a^-1 for a != 0; maps 0 to 0). Fixed sequence of
/// multiplications, independent of the value.
fn inv(a: u8) -> u8 {
    let a2 = mul(a, a); // a^2
    let a3 = mul(a2, a); // a^3
    let a6 = mul(a3, a3); // a^6
    let a12 = mul(a6, a6); // a^12
    let a15 = mul(a12, a3); // a^15
    let a30 = mul(a15, a15); // a^30
    let a60 = mul(a30, a30); // a^60
    let a63 = mul(a60, a3); // a^63
    let a126 = mul(a63, a63); // a^126
    let a127 = mul(a126, a); // a^127
    mul(a127, a127) // a^254
}

/// Evaluates the polynomial with `coeffs[0]` as constant term at `x` (Horner).
fn evaluate(coeffs: &[u8], x: u8) -> u8 {
    coeffs.iter().rev().fold(0u8, |acc, &c| add(mul(acc, x), c))
}

/// Splits `secret` into `parts` shares, any `threshold` of which recover it.
///
/// Share `i` is `[p_0(i+1), …, p_{n-1}(i+1), i+1]`, i.e. `secret.len() + 1` bytes,
/// exactly as sops writes it into key group `i`.
pub fn split(secret: &[u8], parts: usize, threshold: usize) -> Result<Vec<Vec<u8>>, ShamirError> {
    if parts < threshold {
        return Err(ShamirError::PartsLessThanThreshold);
    }
    if parts > 255 {
        return Err(ShamirError::TooManyParts);
    }
    if threshold < 2 {
        return Err(ShamirError::ThresholdTooSmall);
    }
    if secret.is_empty() {
        return Err(ShamirError::EmptySecret);
    }

    // All random coefficients up front (threshold-1 per secret byte), so an RNG
    // failure happens before any share holds secret-derived data.
    let degree = threshold - 1;
    let mut random = Zeroizing::new(vec![0u8; secret.len() * degree]);
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| ShamirError::Random)?;

    let mut shares: Vec<Vec<u8>> = (0..parts)
        .map(|i| {
            let mut share = Vec::with_capacity(secret.len() + 1);
            // parts <= 255, so i + 1 fits in a u8; the last byte is the x coordinate.
            share.resize(secret.len(), 0);
            share.push((i + 1) as u8);
            share
        })
        .collect();

    let mut coeffs = Zeroizing::new(vec![0u8; threshold]);
    for (idx, &byte) in secret.iter().enumerate() {
        coeffs[0] = byte;
        coeffs[1..].copy_from_slice(&random[idx * degree..(idx + 1) * degree]);
        for share in shares.iter_mut() {
            let x = share[secret.len()];
            share[idx] = evaluate(&coeffs, x);
        }
    }
    Ok(shares)
}

/// Recovers the secret from shares made by [`split`] (or by sops) by Lagrange
/// interpolation at x = 0 over *all* the shares given.
///
/// With fewer than the original threshold the result is a wrong value, not an
/// error: the scheme cannot tell (sops relies on the data key failing later).
pub fn combine(shares: &[Vec<u8>]) -> Result<Vec<u8>, ShamirError> {
    if shares.len() < 2 {
        return Err(ShamirError::TooFewParts);
    }
    let len = shares[0].len();
    if len < 2 {
        return Err(ShamirError::PartTooShort);
    }
    if shares.iter().any(|s| s.len() != len) {
        return Err(ShamirError::UnequalLengths);
    }
    let secret_len = len - 1;

    // x coordinates are public (last byte of each share); only they are checked.
    let xs: Vec<u8> = shares.iter().map(|s| s[secret_len]).collect();
    for (i, x) in xs.iter().enumerate() {
        if xs[..i].contains(x) {
            return Err(ShamirError::DuplicatePart);
        }
    }

    // Lagrange basis values at 0 depend only on the xs, so compute them once:
    // l_i(0) = prod_{j != i} x_j / (x_i - x_j)   (subtraction is XOR here).
    let basis: Vec<u8> = (0..xs.len())
        .map(|i| {
            let (mut num, mut den) = (1u8, 1u8);
            for (j, &xj) in xs.iter().enumerate() {
                if j != i {
                    num = mul(num, xj);
                    den = mul(den, add(xs[i], xj));
                }
            }
            // den != 0 because the xs are distinct.
            mul(num, inv(den))
        })
        .collect();

    let mut secret = vec![0u8; secret_len];
    for (idx, out) in secret.iter_mut().enumerate() {
        let mut acc = 0u8;
        for (share, &l) in shares.iter().zip(basis.iter()) {
            acc = add(acc, mul(share[idx], l));
        }
        *out = acc;
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex decoder for the vectors (the main crate has no `hex` dependency).
    fn h(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Slow reference multiplication (Russian peasant with explicit reduction).
    fn mul_ref(mut a: u8, mut b: u8) -> u8 {
        let mut p = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                p ^= a;
            }
            let hi = a & 0x80 != 0;
            a <<= 1;
            if hi {
                a ^= 0x1B;
            }
            b >>= 1;
        }
        p
    }

    #[test]
    fn field_arithmetic() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), mul_ref(a, b), "{a} * {b}");
            }
            if a != 0 {
                assert_eq!(mul(a, inv(a)), 1, "inverse of {a}");
            }
        }
        assert_eq!(inv(0), 0);
        // Known AES-field facts: 0x53 * 0xCA = 1, {57}*{83} = {c1} (FIPS-197 4.2).
        assert_eq!(mul(0x53, 0xCA), 1);
        assert_eq!(mul(0x57, 0x83), 0xC1);
    }

    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        (0u32..(1 << n))
            .filter(|m| m.count_ones() as usize == k)
            .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
            .collect()
    }

    #[test]
    fn round_trips_all_small_parameters() {
        let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
        for parts in 2..=5 {
            for threshold in 2..=parts {
                let shares = split(&secret, parts, threshold).unwrap();
                assert_eq!(shares.len(), parts);
                for (i, s) in shares.iter().enumerate() {
                    assert_eq!(s.len(), 33);
                    assert_eq!(s[32] as usize, i + 1);
                }
                // Every subset of at least `threshold` shares recovers the secret.
                for k in threshold..=parts {
                    for subset in subsets(parts, k) {
                        let picked: Vec<Vec<u8>> =
                            subset.iter().map(|&i| shares[i].clone()).collect();
                        assert_eq!(
                            combine(&picked).unwrap(),
                            secret,
                            "{parts}/{threshold} {subset:?}"
                        );
                    }
                }
                // Fewer than `threshold` (but >= 2) gives a wrong value.
                for k in 2..threshold {
                    for subset in subsets(parts, k) {
                        let picked: Vec<Vec<u8>> =
                            subset.iter().map(|&i| shares[i].clone()).collect();
                        assert_ne!(
                            combine(&picked).unwrap(),
                            secret,
                            "{parts}/{threshold} {subset:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn max_parts_and_one_byte_secret() {
        let shares = split(&[0x42], 255, 3).unwrap();
        assert_eq!(shares[254], vec![shares[254][0], 255]);
        let picked = vec![shares[0].clone(), shares[100].clone(), shares[254].clone()];
        assert_eq!(combine(&picked).unwrap(), vec![0x42]);
    }

    #[test]
    fn split_rejects_bad_parameters() {
        assert_eq!(split(b"k", 2, 1), Err(ShamirError::ThresholdTooSmall));
        assert_eq!(split(b"k", 2, 3), Err(ShamirError::PartsLessThanThreshold));
        assert_eq!(split(b"k", 256, 2), Err(ShamirError::TooManyParts));
        assert_eq!(split(b"", 2, 2), Err(ShamirError::EmptySecret));
        assert_eq!(
            ShamirError::ThresholdTooSmall.to_string(),
            "threshold must be at least 2"
        );
    }

    #[test]
    fn combine_rejects_bad_input() {
        let s = split(b"secret", 3, 2).unwrap();
        assert_eq!(combine(&s[..1]), Err(ShamirError::TooFewParts));
        assert_eq!(combine(&[]), Err(ShamirError::TooFewParts));
        assert_eq!(
            combine(&[s[0].clone(), s[1][..3].to_vec()]),
            Err(ShamirError::UnequalLengths)
        );
        assert_eq!(
            combine(&[s[0].clone(), s[0].clone()]),
            Err(ShamirError::DuplicatePart)
        );
        assert_eq!(combine(&[vec![1], vec![2]]), Err(ShamirError::PartTooShort));
    }

    // Shares unwrapped with the real `age` CLI from the sops 3.11 vectors
    // (11-key-groups-shamir; `age -d -i keyN.txt` on group N's `enc` armor).
    // The expected data keys are `data_key_hex` in MANIFEST.json.

    #[test]
    fn sops_vector_two_groups() {
        let shares = vec![
            h("87d6e4b8d87fb1f6626077b329995a49efb934523f06d92716adfe29ca37d7f901"),
            h("85cba0b2af42c193e60750664e6873b9536406b9674ec53dc3257fa7c749248702"),
        ];
        let key = h("70ddd8bef59d68d51eb46a09fd3fb41972f2d30bfe3e24d8acd58153381d86d3");
        assert_eq!(combine(&shares).unwrap(), key);
        let reversed = vec![shares[1].clone(), shares[0].clone()];
        assert_eq!(combine(&reversed).unwrap(), key);
    }

    #[test]
    fn sops_vector_three_groups_threshold_two() {
        let shares = [
            h("01eb0fc5c3ee120d4bba88903f460656824f35f4d1f96abffcc8d947e58fbd8d01"),
            h("6a21e2de2068f334961ba5f59cf3acaa091a8324261451106ae99e95187dc74d02"),
            h("ba67b9d788e3ac23dd8dbed6fd69cafe7029189d824fb17518f6a3dbbada180d03"),
        ];
        let key = h("d1ad54cc6b654d1a002c93b35edc6002fb7cae4d75a28ada8ed7e409472862cd");
        for (a, b) in [(0, 1), (0, 2), (1, 2), (2, 0)] {
            let pair = vec![shares[a].clone(), shares[b].clone()];
            assert_eq!(combine(&pair).unwrap(), key, "shares {a},{b}");
        }
        assert_eq!(combine(&shares).unwrap(), key);
    }
}
