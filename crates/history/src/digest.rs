//! Fingerprints of a version vector, so that two replicas that agree find
//! out in one small exchange instead of shipping the whole vector.
//!
//! A vector has one entry per origin that ever recorded: one per node and
//! data-dir lifetime, so thousands in a large cluster. Anti-entropy runs
//! every few seconds, and most of the time the two ends agree. The asker
//! sends one 64-bit fingerprint of its whole vector; only when the peer's
//! differs does the peer answer with the fingerprints of `buckets` slices
//! (origins split by a hash of their name), and only the origins of the
//! slices that differ travel. Idle cost is O(1); the cost of a difference
//! is proportional to the slices it touches.
//!
//! The hash is FNV-1a followed by a 64-bit finaliser: fixed by this file,
//! not by the Rust release (std's `DefaultHasher` promises no stability),
//! so agents of different builds compute the same fingerprints. A slice's
//! fingerprint is the wrapping sum of its entries' hashes: independent of
//! order, so no sorting. A collision only delays a sync until the next
//! event changes either side; it never corrupts anything.

use serde::{Deserialize, Serialize};

use crate::model::VersionVector;

/// The most slices a fingerprint may be split into: 32 KiB of fingerprints
/// at 8 bytes each, enough for about 100,000 origins at 25 per slice.
pub const MAX_BUCKETS: u16 = 4096;

/// Origins per slice the asker aims for: small enough that one changed
/// origin costs a few hundred bytes of vector, large enough that the list
/// of slice fingerprints stays well under the vector it replaces.
const ORIGINS_PER_BUCKET: usize = 16;

/// A version vector's fingerprint, whole or in slices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorDigest {
    /// How many slices the origins are split into; 1 is the whole vector.
    pub buckets: u16,
    /// One fingerprint per slice, `buckets` of them.
    pub sums: Vec<u64>,
}

impl VectorDigest {
    /// The whole vector as one fingerprint, with the slice count the asker
    /// would like a difference to be described in.
    pub fn whole(vector: &VersionVector) -> u64 {
        vector
            .iter()
            .filter(|(_, through)| **through > 0)
            .fold(0u64, |sum, (origin, through)| {
                sum.wrapping_add(entry_hash(origin, *through))
            })
    }

    /// The vector's fingerprints in `buckets` slices.
    pub fn sliced(vector: &VersionVector, buckets: u16) -> Self {
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        let mut sums = vec![0u64; usize::from(buckets)];
        for (origin, &through) in vector.iter().filter(|(_, through)| **through > 0) {
            let slot = &mut sums[usize::from(bucket_of(origin, buckets))];
            *slot = slot.wrapping_add(entry_hash(origin, through));
        }
        VectorDigest { buckets, sums }
    }

    /// The slices whose fingerprints differ from `other`'s; every slice
    /// when the two were cut differently (they cannot be compared).
    pub fn differing(&self, other: &VectorDigest) -> Vec<u16> {
        if self.buckets != other.buckets || self.sums.len() != other.sums.len() {
            return (0..self.buckets).collect();
        }
        (0..self.buckets)
            .zip(self.sums.iter().zip(&other.sums))
            .filter(|(_, (a, b))| a != b)
            .map(|(bucket, _)| bucket)
            .collect()
    }
}

/// How many slices suit a vector of `origins` entries: a power of two, so
/// that asker and answerer with slightly different counts usually agree.
pub fn buckets_for(origins: usize) -> u16 {
    let wanted = (origins / ORIGINS_PER_BUCKET).max(1).next_power_of_two();
    u16::try_from(wanted).map_or(MAX_BUCKETS, |b| b.min(MAX_BUCKETS))
}

/// The slice an origin falls in, out of `buckets`.
pub fn bucket_of(origin: &str, buckets: u16) -> u16 {
    let buckets = u64::from(buckets.max(1));
    u16::try_from(mix(fnv1a(origin.as_bytes(), FNV_OFFSET)) % buckets)
        .expect("a remainder of a u16 divisor fits a u16")
}

/// Some slices of a cut: the part of the vector a scoped sync is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slices {
    /// The cut: how many slices the origins were split into.
    pub buckets: u16,
    /// The slices meant, sorted, without repeats.
    pub slices: Vec<u16>,
}

impl Slices {
    pub fn new(buckets: u16, mut slices: Vec<u16>) -> Self {
        slices.sort_unstable();
        slices.dedup();
        Slices { buckets, slices }
    }

    pub fn contains(&self, origin: &str) -> bool {
        self.slices
            .binary_search(&bucket_of(origin, self.buckets))
            .is_ok()
    }

    /// The entries of `vector` in these slices.
    pub fn restrict(&self, vector: &VersionVector) -> VersionVector {
        vector
            .iter()
            .filter(|(origin, _)| self.contains(origin))
            .map(|(origin, through)| (origin.clone(), *through))
            .collect()
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// A finaliser (splitmix64's): FNV alone leaves the low bits of similar
/// names correlated, and the slice is taken from the low bits.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn entry_hash(origin: &str, through: u64) -> u64 {
    // The name's end is marked so ("a", 1…) and ("a\x01", …) never share
    // an input.
    let name = fnv1a(origin.as_bytes(), FNV_OFFSET);
    mix(fnv1a(&through.to_le_bytes(), fnv1a(&[0xff], name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(entries: &[(&str, u64)]) -> VersionVector {
        entries.iter().map(|(o, t)| ((*o).to_owned(), *t)).collect()
    }

    fn origins(n: usize) -> VersionVector {
        (0..n)
            .map(|i| (format!("node-{i}#{i:016x}"), 10 + i as u64))
            .collect()
    }

    #[test]
    fn equal_vectors_have_equal_fingerprints_and_any_change_shows() {
        let a = origins(500);
        let mut b = a.clone();
        assert_eq!(VectorDigest::whole(&a), VectorDigest::whole(&b));
        *b.get_mut("node-7#0000000000000007").unwrap() += 1;
        assert_ne!(VectorDigest::whole(&a), VectorDigest::whole(&b));
        let buckets = buckets_for(a.len());
        let differing =
            VectorDigest::sliced(&a, buckets).differing(&VectorDigest::sliced(&b, buckets));
        assert_eq!(
            differing,
            vec![bucket_of("node-7#0000000000000007", buckets)]
        );
    }

    #[test]
    fn an_origin_at_zero_says_nothing() {
        let held = vector(&[("a#0000000000000001", 3)]);
        let mut with_zero = held.clone();
        with_zero.insert("b#0000000000000002".into(), 0);
        assert_eq!(VectorDigest::whole(&held), VectorDigest::whole(&with_zero));
        assert_eq!(
            VectorDigest::sliced(&held, 8),
            VectorDigest::sliced(&with_zero, 8)
        );
    }

    #[test]
    fn the_fingerprint_is_fixed_by_this_file() {
        // Pinned: agents of different builds must agree.
        let v = vector(&[
            ("host-1#00000000000000aa", 42),
            ("host-2#00000000000000bb", 7),
        ]);
        assert_eq!(VectorDigest::whole(&v), 0x0a93_75b2_c9cc_9306);
        assert_eq!(bucket_of("host-1#00000000000000aa", 64), 27);
    }

    #[test]
    fn slices_split_origins_evenly_and_restrict_keeps_only_theirs() {
        let a = origins(5000);
        let buckets = buckets_for(a.len());
        assert_eq!(buckets, 512);
        let mut counts = vec![0usize; usize::from(buckets)];
        for origin in a.keys() {
            counts[usize::from(bucket_of(origin, buckets))] += 1;
        }
        assert!(counts.iter().all(|&c| (1..=30).contains(&c)), "{counts:?}");
        let picked = Slices::new(buckets, vec![100, 3, 100]);
        assert_eq!(picked.slices, vec![3, 100]);
        let restricted = picked.restrict(&a);
        assert_eq!(restricted.len(), counts[3] + counts[100]);
        assert!(restricted.keys().all(|o| picked.contains(o)));
    }

    #[test]
    fn slice_counts_stay_in_bounds() {
        assert_eq!(buckets_for(0), 1);
        assert_eq!(buckets_for(40), 2);
        assert_eq!(buckets_for(10_000_000), MAX_BUCKETS);
        let differently_cut =
            VectorDigest::sliced(&origins(10), 4).differing(&VectorDigest::sliced(&origins(10), 8));
        assert_eq!(differently_cut, vec![0, 1, 2, 3]);
    }
}
