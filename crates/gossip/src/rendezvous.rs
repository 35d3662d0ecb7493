//! Rendezvous (highest-random-weight) hashing: every node ranks the same
//! candidates the same way for a key, without talking to the others, and
//! a candidate leaving only moves the keys it ranked first.

use ring::digest::{SHA256, digest};

/// Candidates ordered best first for `key`. SHA-256 rather than std's
/// hasher: the order must agree between agents built by different
/// compiler versions during a rolling upgrade.
pub fn rank<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(u64, &str)> = candidates
        .into_iter()
        .map(|candidate| (score(key, candidate), candidate))
        .collect();
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().map(|(_, candidate)| candidate).collect()
}

pub fn score(key: &str, candidate: &str) -> u64 {
    // Length-prefixed so ("ab", "c") and ("a", "bc") differ.
    let mut input = Vec::with_capacity(key.len() + candidate.len() + 8);
    input.extend_from_slice(&(key.len() as u64).to_be_bytes());
    input.extend_from_slice(key.as_bytes());
    input.extend_from_slice(candidate.as_bytes());
    let hash = digest(&SHA256, &input);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_independent_of_input_order() {
        let a = rank("k", ["n1", "n2", "n3", "n4"]);
        let b = rank("k", ["n4", "n3", "n1", "n2"]);
        assert_eq!(a, b);
    }

    #[test]
    fn removing_a_candidate_keeps_the_others_in_order() {
        let all = rank("down:n9:1", ["n1", "n2", "n3", "n4", "n5"]);
        let gone = all[0];
        let rest = rank(
            "down:n9:1",
            ["n1", "n2", "n3", "n4", "n5"]
                .into_iter()
                .filter(|c| *c != gone),
        );
        assert_eq!(rest, all[1..]);
    }

    #[test]
    fn keys_spread_over_candidates() {
        let mut firsts = std::collections::HashMap::new();
        for i in 0..1000 {
            let key = format!("key-{i}");
            *firsts
                .entry(rank(&key, ["a", "b", "c", "d"])[0])
                .or_insert(0) += 1;
        }
        assert!(firsts.values().all(|n| *n > 150), "{firsts:?}");
    }
}
