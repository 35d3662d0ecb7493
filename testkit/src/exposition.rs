//! A strict reader of the Prometheus/OpenMetrics text exposition, for
//! tests that assert what an agent's `/metrics` serves: every line must
//! parse, and the naming conventions must hold.

use std::collections::{BTreeMap, HashSet};

/// One metric family: its declared type, unit and samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricFamily {
    pub name: String,
    /// `counter`, `gauge`, `histogram`, …
    pub kind: String,
    pub unit: Option<String>,
    pub help: String,
    pub samples: Vec<Sample>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's own name (`_total`, `_bucket`, … included).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parse `text`, or say which line breaks which rule. Checks, besides the
/// syntax: metadata before samples, samples named after their family
/// (`_total` for counters; `_bucket`/`_sum`/`_count` for histograms, with
/// cumulative buckets ending at `+Inf` = `_count`), a declared unit as the
/// name's suffix, no series twice, and `# EOF` last.
pub fn parse_exposition(text: &str) -> Result<Vec<MetricFamily>, String> {
    let mut families: Vec<MetricFamily> = Vec::new();
    let mut seen_series = HashSet::new();
    let mut ended = false;
    for (number, line) in text.lines().enumerate() {
        let fail = |why: &str| Err(format!("line {}: {why}: {line:?}", number + 1));
        if ended {
            return fail("text after # EOF");
        }
        if line == "# EOF" {
            ended = true;
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (Some(keyword), Some(name)) = (parts.next(), parts.next()) else {
                return fail("a metadata line needs a keyword and a name");
            };
            let rest = parts.next().unwrap_or("").to_owned();
            if !valid_name(name) {
                return fail("invalid metric name");
            }
            if families.last().is_none_or(|f| f.name != name) {
                if families.iter().any(|f| f.name == name) {
                    return fail("family declared twice");
                }
                families.push(MetricFamily {
                    name: name.to_owned(),
                    ..MetricFamily::default()
                });
            }
            let family = families.last_mut().expect("pushed above");
            match keyword {
                "HELP" => family.help = rest,
                "TYPE" => family.kind = rest,
                "UNIT" => family.unit = Some(rest),
                _ => return fail("unknown metadata keyword"),
            }
            continue;
        }
        let sample = match parse_sample(line) {
            Ok(sample) => sample,
            Err(why) => return fail(&why),
        };
        let Some(family) = families.last_mut() else {
            return fail("a sample before any # TYPE");
        };
        let suffix = sample.name.strip_prefix(family.name.as_str());
        let allowed: &[&str] = match family.kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "summary" => &["", "_sum", "_count", "_created"],
            "gauge" | "unknown" | "stateset" | "info" => &[""],
            _ => return fail("sample of a family without a known # TYPE"),
        };
        if !suffix.is_some_and(|s| allowed.contains(&s)) {
            return fail(&format!(
                "sample does not belong to family {} ({})",
                family.name, family.kind
            ));
        }
        if !seen_series.insert((sample.name.clone(), sample.labels.clone())) {
            return fail("the same series twice");
        }
        family.samples.push(sample);
    }
    if !ended {
        return Err("no # EOF at the end".to_owned());
    }
    for family in &families {
        if family.kind.is_empty() {
            return Err(format!("{}: no # TYPE", family.name));
        }
        if let Some(unit) = &family.unit
            && !family.name.ends_with(&format!("_{unit}"))
        {
            return Err(format!(
                "{}: unit {unit} is not the name's suffix",
                family.name
            ));
        }
        if family.kind == "counter" && family.name.ends_with("_total") {
            return Err(format!(
                "{}: a counter family is named without _total (its samples carry it)",
                family.name
            ));
        }
        if family.kind == "histogram" {
            check_histogram(family)?;
        }
    }
    Ok(families)
}

type Labels = BTreeMap<String, String>;
/// A histogram series' (le, cumulative count) pairs and its `_count`.
type Buckets = (Vec<(f64, f64)>, Option<f64>);

fn check_histogram(family: &MetricFamily) -> Result<(), String> {
    // Per label set (without `le`): buckets ascending and cumulative, and
    // the +Inf bucket equal to the count.
    let mut series: BTreeMap<Labels, Buckets> = BTreeMap::new();
    for sample in &family.samples {
        let mut labels = sample.labels.clone();
        let le = labels.remove("le");
        let entry = series.entry(labels).or_default();
        if sample.name.ends_with("_bucket") {
            let le = le
                .ok_or_else(|| format!("{}: a bucket without le", family.name))?
                .parse::<f64>()
                .map_err(|_| format!("{}: le is not a number", family.name))?;
            entry.0.push((le, sample.value));
        } else if sample.name.ends_with("_count") {
            entry.1 = Some(sample.value);
        }
    }
    for (labels, (buckets, count)) in series {
        let name = &family.name;
        let ordered = buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        if !ordered {
            return Err(format!(
                "{name}{labels:?}: buckets not ascending and cumulative"
            ));
        }
        match (buckets.last(), count) {
            (Some(&(le, inf)), Some(count)) if le == f64::INFINITY && inf == count => {}
            _ => {
                return Err(format!(
                    "{name}{labels:?}: +Inf bucket missing or != _count"
                ));
            }
        }
    }
    Ok(())
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample needs a value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err("invalid sample name".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find("=\"").ok_or("a label needs =\"value\"")?;
            let key = &rest[..eq];
            if !valid_label(key) {
                return Err(format!("invalid label name {key:?}"));
            }
            let (value, after) = quoted(&rest[eq + 2..])?;
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            rest = after.strip_prefix(',').unwrap_or(after);
        }
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or("one space before the value")?
        .split(' ');
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number
            .parse::<f64>()
            .map_err(|_| format!("value {number:?} is not a number"))?,
    };
    // An optional timestamp may follow; nothing else.
    if let Some(timestamp) = fields.next()
        && timestamp.parse::<f64>().is_err()
    {
        return Err("trailing text after the value".to_owned());
    }
    if fields.next().is_some() {
        return Err("trailing text after the timestamp".to_owned());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A label value up to its closing quote, unescaped; and what follows.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, '"')) => value.push('"'),
                Some((_, '\\')) => value.push('\\'),
                _ => return Err("bad escape in a label value".to_owned()),
            },
            '\n' => return Err("newline in a label value".to_owned()),
            c => value.push(c),
        }
    }
    Err("unterminated label value".to_owned())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label(name: &str) -> bool {
    valid_name(name) && !name.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_exposition_parses() {
        let text = "# HELP a_seconds A.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\n\
                    a_seconds_sum 1.5\na_seconds_count 2\na_seconds_bucket{le=\"1.0\"} 1\n\
                    a_seconds_bucket{le=\"+Inf\"} 2\n# HELP b B.\n# TYPE b counter\n\
                    b_total{x=\"q\\\"uote\"} 3\n# EOF\n";
        let families = parse_exposition(text).expect("valid");
        assert_eq!(families.len(), 2);
        assert_eq!(families[1].samples[0].labels["x"], "q\"uote");
    }

    #[test]
    fn each_broken_rule_is_named() {
        for (text, why) in [
            ("# TYPE b counter\nb 1\n# EOF\n", "does not belong"),
            ("# TYPE b gauge\nb 1\nb 2\n# EOF\n", "twice"),
            ("# TYPE b gauge\nb 1\n", "EOF"),
            ("# TYPE b gauge\nb one\n# EOF\n", "not a number"),
            ("# TYPE b gauge\n# UNIT b bytes\nb 1\n# EOF\n", "unit"),
            (
                "# TYPE b_total counter\nb_total_total 1\n# EOF\n",
                "without _total",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\nh_sum 1\n# EOF\n",
                "+Inf",
            ),
        ] {
            let error = parse_exposition(text).expect_err(why);
            assert!(error.contains(why), "{why}: {error}");
        }
    }
}
