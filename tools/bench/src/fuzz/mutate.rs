//! A seeded, structure-aware mutator of captured real inputs.
//!
//! Coverage-guided fuzzing needs a nightly compiler (see `BENCHMARKS.md`),
//! so the fuzzer instead starts from what the real encoders produce and
//! breaks it the ways that reach past the first check: byte flips and
//! splices for the binary formats, varint and length edits for postcard
//! and frame lengths, digit-run edits for numbers in text, and edits of the
//! parsed JSON tree (types swapped, fields dropped or added, arrays blown
//! up, numbers at the edges) for the sealed JSON bodies. One seed makes
//! every run repeatable.

use rand::RngExt;
use rand::rngs::StdRng;
use serde_json::Value;

/// Numbers at the edges of every integer and float type a decoder reads,
/// as text.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "127",
    "128",
    "255",
    "65535",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "0.5",
    "-0.0",
    "1e308",
    "-1e308",
    "1e309",
    "1.7976931348623157e308",
    "5e-324",
    "1e-400",
    "1e18",
    "9007199254740993",
    "NaN",
    "inf",
];

/// Values for postcard varints and frame lengths.
const INTEGERS: &[u64] = &[
    0,
    1,
    2,
    127,
    128,
    255,
    256,
    16_383,
    16_384,
    65_535,
    1 << 20,
    16 << 20,
    (16 << 20) + 1,
    u32::MAX as u64 - 1,
    u32::MAX as u64,
    i64::MAX as u64,
    i64::MAX as u64 + 1,
    u64::MAX - 1,
    u64::MAX,
];

/// Strings that have broken parsers: empty, huge, control characters,
/// separators the formats use, names of the right shape.
fn hostile_string(rng: &mut StdRng) -> String {
    match rng.random_range(0..12) {
        0 => String::new(),
        1 => "a".repeat(rng.random_range(254..20_000)),
        2 => "\u{0}\u{1}\u{7f}\u{202e}\u{feff}é漢".to_owned(),
        3 => "node-b#0123456789abcdef".to_owned(),
        4 => "node-b#0123456789ABCDEF".to_owned(),
        5 => "a:b:c:d".to_owned(),
        6 => " padded ".to_owned(),
        7 => NUMBERS[rng.random_range(0..NUMBERS.len())].to_owned(),
        8 => "-".repeat(rng.random_range(1..300)),
        9 => "../../etc/passwd".to_owned(),
        10 => "'; DROP TABLE events; --".to_owned(),
        _ => (0..rng.random_range(1..64))
            .map(|_| char::from(rng.random_range(0x20u8..0x7f)))
            .collect(),
    }
}

/// One to four byte-level edits of `data`; `seeds` feed the splices.
pub fn bytes(rng: &mut StdRng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..rng.random_range(1..=4) {
        byte_edit(rng, data, seeds);
    }
}

fn byte_edit(rng: &mut StdRng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = data.len();
    let pos = |rng: &mut StdRng| rng.random_range(0..=len);
    match rng.random_range(0..11) {
        0 if len > 0 => {
            let at = rng.random_range(0..len);
            data[at] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let at = rng.random_range(0..len);
            data[at] = [0, 1, 0x7f, 0x80, 0xff, rng.random()][rng.random_range(0..6)];
        }
        2 => {
            let at = pos(rng);
            let run: Vec<u8> = if rng.random_bool(0.5) {
                (0..rng.random_range(1..16)).map(|_| rng.random()).collect()
            } else {
                vec![rng.random(); rng.random_range(1..512)]
            };
            data.splice(at..at, run);
        }
        3 if len > 0 => {
            let at = rng.random_range(0..len);
            let end = rng.random_range(at..=len.min(at + 64));
            data.drain(at..end);
        }
        4 if len > 0 => {
            let at = rng.random_range(0..len);
            let end = rng.random_range(at..=len.min(at + 64));
            let chunk = data[at..end].to_vec();
            let to = pos(rng);
            data.splice(to..to, chunk);
        }
        5 => data.truncate(pos(rng)),
        6 if !seeds.is_empty() => {
            let other = &seeds[rng.random_range(0..seeds.len())];
            let cut = pos(rng);
            let from = rng.random_range(0..=other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        7 => {
            // A postcard varint (LEB128) where a length or number was.
            let at = pos(rng);
            let end = rng.random_range(at..=len.min(at + 10));
            let value = INTEGERS[rng.random_range(0..INTEGERS.len())];
            data.splice(at..end, varint(value));
        }
        8 if len >= 4 => {
            // A fixed-width length (a frame's prefix, a stamp's time).
            let at = rng.random_range(0..=len - 4);
            let value = INTEGERS[rng.random_range(0..INTEGERS.len())] as u32;
            let bytes = if rng.random_bool(0.5) {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            data[at..at + 4].copy_from_slice(&bytes);
        }
        9 => number_edit(rng, data),
        _ if len > 1 => {
            let (a, b) = (rng.random_range(0..len), rng.random_range(0..len));
            data.swap(a, b);
        }
        _ => data.push(rng.random()),
    }
}

/// A run of ASCII digits replaced by a number at some type's edge.
fn number_edit(rng: &mut StdRng, data: &mut Vec<u8>) {
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
        .collect();
    let number = NUMBERS[rng.random_range(0..NUMBERS.len())].as_bytes();
    if starts.is_empty() {
        let at = rng.random_range(0..=data.len());
        data.splice(at..at, number.iter().copied());
        return;
    }
    let start = starts[rng.random_range(0..starts.len())];
    let end = data[start..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(data.len(), |n| start + n);
    data.splice(start..end, number.iter().copied());
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// JSON edits of the parsed tree, re-serialized, sometimes followed by a
/// byte edit (for what a tree cannot hold: duplicate keys, bad escapes,
/// numbers beyond f64). Text that does not parse gets byte edits only.
pub fn json(rng: &mut StdRng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let Ok(mut value) = serde_json::from_slice::<Value>(data) else {
        bytes(rng, data, seeds);
        return;
    };
    for _ in 0..rng.random_range(1..=3) {
        let target = pick(rng, &mut value);
        edit_value(rng, target);
    }
    *data = serde_json::to_vec(&value).expect("a Value serializes");
    if rng.random_bool(0.25) {
        bytes(rng, data, seeds);
    }
}

/// The parameters of `/v1/history`, and one it does not know.
const QUERY_KEYS: &[&str] = &[
    "node", "kind", "check", "since", "until", "cursor", "limit", "nodes", "",
];

/// Values that reach each branch of the query parser: times in every form
/// it takes and at their edges, cursors, kinds, limits.
fn query_value(rng: &mut StdRng) -> String {
    const VALUES: &[&str] = &[
        "24h",
        "30m",
        "7d",
        "0s",
        "18446744073709551615ns",
        "584942417355y",
        "99999999999999999999d",
        "1y 2months 3weeks",
        "2026-11-23T10:00:00Z",
        "2026-11-23 10:00:00",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59.999999999Z",
        "2026-02-30T10:00:00Z",
        "0",
        "1000",
        "1001",
        "-5",
        "check",
        "membership",
        "CHECK",
        "1:2:node-b#0123456789abcdef",
        "18446744073709551615:18446744073709551615:x",
        "1:2:",
        "::",
        "%",
        "%zz",
        "%FF%FE",
        "%00",
        "+",
    ];
    match rng.random_range(0..4) {
        0 => hostile_string(rng),
        1 => NUMBERS[rng.random_range(0..NUMBERS.len())].to_owned(),
        _ => VALUES[rng.random_range(0..VALUES.len())].to_owned(),
    }
}

/// Percent-encoding for everything but the unreserved characters, except
/// that '%' passes through half the time so broken escapes reach the
/// decoder.
fn encode_component(rng: &mut StdRng, text: &str) -> String {
    let raw_percent = rng.random_bool(0.5);
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) || (raw_percent && byte == b'%')
        {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Edits of a query string's parameters (values, keys, repeats,
/// removals), or of its raw bytes.
pub fn query(rng: &mut StdRng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    if rng.random_ratio(1, 6) {
        bytes(rng, data, seeds);
        return;
    }
    let text = String::from_utf8_lossy(data).into_owned();
    let mut pairs: Vec<String> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    for _ in 0..rng.random_range(1..=3) {
        let key = QUERY_KEYS[rng.random_range(0..QUERY_KEYS.len())];
        let value = query_value(rng);
        let pair = format!("{key}={}", encode_component(rng, &value));
        match rng.random_range(0..5) {
            0 if !pairs.is_empty() => {
                let at = rng.random_range(0..pairs.len());
                pairs.remove(at);
            }
            1 if !pairs.is_empty() => {
                let at = rng.random_range(0..pairs.len());
                let copy = pairs[at].clone();
                pairs.push(copy);
            }
            2 if !pairs.is_empty() => {
                // Same key, another value.
                let at = rng.random_range(0..pairs.len());
                let old_key = pairs[at].split('=').next().unwrap_or_default().to_owned();
                pairs[at] = format!("{old_key}={}", encode_component(rng, &value));
            }
            3 => pairs.push(key.to_owned()),
            _ => pairs.push(pair),
        }
    }
    *data = pairs.join("&").into_bytes();
}

/// A random node of the tree: each level descends with probability 3/4.
/// The path is chosen on a shared borrow, then followed as a JSON pointer.
fn pick<'a>(rng: &mut StdRng, value: &'a mut Value) -> &'a mut Value {
    let mut pointer = String::new();
    let mut node: &Value = value;
    while rng.random_bool(0.75) {
        match node {
            Value::Array(items) if !items.is_empty() => {
                let at = rng.random_range(0..items.len());
                pointer.push_str(&format!("/{at}"));
                node = &items[at];
            }
            Value::Object(map) if !map.is_empty() => {
                let (key, child) = map
                    .iter()
                    .nth(rng.random_range(0..map.len()))
                    .expect("index in range");
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                node = child;
            }
            _ => break,
        }
    }
    value
        .pointer_mut(&pointer)
        .expect("the pointer follows a path just walked")
}

fn edit_value(rng: &mut StdRng, value: &mut Value) {
    match rng.random_range(0..8) {
        0 => *value = other_type(rng),
        1 => *value = edge_number(rng),
        2 => *value = Value::String(hostile_string(rng)),
        3 => {
            // Nesting past serde_json's recursion limit, or just under it.
            let depth = [3, 127, 129, 5_000][rng.random_range(0..4)];
            let mut nested = Value::Null;
            for _ in 0..depth {
                nested = Value::Array(vec![nested]);
            }
            *value = nested;
        }
        _ => match value {
            Value::Array(items) => match rng.random_range(0..4) {
                0 if !items.is_empty() => {
                    let at = rng.random_range(0..items.len());
                    items.remove(at);
                }
                1 if !items.is_empty() => {
                    let at = rng.random_range(0..items.len());
                    // Up to 64 KiB: past the annotation limit, short of
                    // making the fuzzer slower than the decoder.
                    let item = items[at].clone();
                    let size = serde_json::to_vec(&item).map_or(1, |b| b.len().max(1));
                    let copies = [2, 10, 100, 3_000][rng.random_range(0..4)].min((64 << 10) / size);
                    items.extend(std::iter::repeat_n(item, copies));
                }
                2 => items.clear(),
                _ => items.push(other_type(rng)),
            },
            Value::Object(map) => match rng.random_range(0..3) {
                0 if !map.is_empty() => {
                    let at = rng.random_range(0..map.len());
                    let key = map.keys().nth(at).expect("index in range").clone();
                    map.remove(&key);
                }
                1 => {
                    map.insert(hostile_string(rng), other_type(rng));
                }
                _ => {
                    if let Some(key) = map.keys().next().cloned() {
                        map.insert(key, other_type(rng));
                    }
                }
            },
            Value::String(text) => *text = hostile_string(rng),
            Value::Number(_) => *value = edge_number(rng),
            Value::Bool(flag) => *flag = !*flag,
            Value::Null => *value = other_type(rng),
        },
    }
}

fn other_type(rng: &mut StdRng) -> Value {
    match rng.random_range(0..6) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => edge_number(rng),
        3 => Value::String(hostile_string(rng)),
        4 => Value::Array(vec![Value::Null, edge_number(rng)]),
        _ => serde_json::json!({ hostile_string(rng): edge_number(rng) }),
    }
}

fn edge_number(rng: &mut StdRng) -> Value {
    match rng.random_range(0..10) {
        0 => Value::from(0u64),
        1 => Value::from(u64::MAX),
        2 => Value::from(i64::MIN),
        3 => Value::from(-1i64),
        4 => Value::from(u32::MAX),
        5 => Value::from(1e300),
        6 => Value::from(-1e300),
        7 => Value::from(f64::MAX),
        8 => Value::from(0.5),
        _ => Value::from(rng.random::<u64>() >> rng.random_range(0..64)),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn varints_are_leb128() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(u64::MAX).len(), 10);
    }

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let run = || {
            let mut rng = StdRng::seed_from_u64(7);
            let mut data = br#"{"node":"a","n":[1,2,3]}"#.to_vec();
            for _ in 0..50 {
                json(&mut rng, &mut data, &[]);
                data.truncate(4096);
            }
            data
        };
        assert_eq!(run(), run());
    }
}
