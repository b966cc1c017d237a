//! Deterministic pseudo-random numbers (xorshift64): the same keys and bytes in every run and
//! for every contender, with no dependency.

/// An endless xorshift64 sequence from a fixed seed.
pub fn xorshift() -> impl Iterator<Item = u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    })
}
