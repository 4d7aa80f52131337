//! Reading the request metrics back in process (tests and benchmarks): the Prometheus text
//! that `/metrics` serves, and sums over its `apiserver_request_total` samples.

use crate::server::Shared;

/// The Prometheus text exposition of every registered metric.
pub fn encode(s: &Shared) -> String {
    let reg = match s.metrics.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &reg) {
        tracing::warn!("metrics encoding failed: {e}");
    }
    text
}

/// One sample: metric name, labels, value.
pub type Sample<'a> = (&'a str, Vec<(String, String)>, f64);

/// Split `name{a="x",b="y"} 3` into its name, labels and value.
pub fn parse_sample(line: &str) -> Option<Sample<'_>> {
    if line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, rest)) = head.split_once('{') else {
        return Some((head, Vec::new(), value));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(o) => val.push(o),
                    None => return None,
                },
                '"' => break,
                o => val.push(o),
            }
        }
        labels.push((key.trim_start_matches(',').to_string(), val));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name, labels, value))
}

/// Sum of `apiserver_request_total` over samples carrying every label in `want`.
pub fn count(s: &Shared, want: &[(&str, &str)]) -> u64 {
    count_in(&encode(s), want)
}

/// Like [`count`], on scraped text.
pub fn count_in(text: &str, want: &[(&str, &str)]) -> u64 {
    let mut total = 0.0;
    for line in text.lines() {
        let Some((name, labels, v)) = parse_sample(line) else {
            continue;
        };
        if name != "apiserver_request_total" {
            continue;
        }
        let ok = want
            .iter()
            .all(|(k, w)| labels.iter().any(|(lk, lv)| lk == k && lv == w));
        if ok {
            total += v;
        }
    }
    total as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_and_sum() {
        let text = "# HELP x\napiserver_request_total{verb=\"get\",resource=\"pods\",user=\"a\",code=\"200\"} 2\n\
                    apiserver_request_total{verb=\"get\",resource=\"pods\",user=\"b\",code=\"500\"} 3\n\
                    apiserver_request_total{verb=\"list\",resource=\"pods\",user=\"a\",code=\"200\"} 1\n";
        assert_eq!(count_in(text, &[("verb", "get"), ("resource", "pods")]), 5);
        assert_eq!(count_in(text, &[("user", "a")]), 3);
        assert_eq!(count_in(text, &[("code", "500")]), 3);
    }
}
