//! Fault injection for tests and benchmarks: per verb and resource, a rate of 500 or 429
//! errors, a rate of timeouts, and added latency. Rules are set at start ([`crate::Config`])
//! and replaced at run time; a seed makes the random choices reproducible.

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::json;

use crate::server::json_response;
use crate::status::ApiError;

/// The error an injected failure returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 500 `InternalError`.
    Internal,
    /// 429 `TooManyRequests` with a `Retry-After` header, as API priority and fairness sends.
    TooManyRequests { retry_after_seconds: u64 },
}

/// What happens to a request chosen for a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Never answer: the request hangs until the client gives up (or the server stops).
    Hang,
    /// Answer 504 `Timeout` after this long, as kube-apiserver's request timeout does.
    After(Duration),
}

/// One rule. `None` in `verb` or `resource` matches everything; `resource` is the plural
/// (`configmaps`), `verb` the Kubernetes verb (`get`, `list`, `watch`, `create`, `update`,
/// `patch`, `delete`, `deletecollection`).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    pub verb: Option<String>,
    pub resource: Option<String>,
    /// Share of matching requests (0.0 to 1.0) that fail with `error`.
    pub error_rate: f64,
    pub error: ErrorKind,
    /// Share of matching requests (0.0 to 1.0) that time out.
    pub timeout_rate: f64,
    pub timeout: Timeout,
    /// Added to every matching request before it is served.
    pub latency: Duration,
}

impl Default for FaultRule {
    fn default() -> Self {
        FaultRule {
            verb: None,
            resource: None,
            error_rate: 0.0,
            error: ErrorKind::Internal,
            timeout_rate: 0.0,
            timeout: Timeout::After(Duration::from_secs(60)),
            latency: Duration::ZERO,
        }
    }
}

impl FaultRule {
    /// A rule for one verb and/or resource, with no effect until rates or latency are set.
    pub fn new(verb: Option<&str>, resource: Option<&str>) -> FaultRule {
        FaultRule {
            verb: verb.map(str::to_string),
            resource: resource.map(str::to_string),
            ..FaultRule::default()
        }
    }

    /// Fail this share of matching requests with 500.
    pub fn internal_errors(mut self, rate: f64) -> FaultRule {
        self.error_rate = rate;
        self.error = ErrorKind::Internal;
        self
    }

    /// Fail this share of matching requests with 429 and `Retry-After`.
    pub fn too_many_requests(mut self, rate: f64, retry_after_seconds: u64) -> FaultRule {
        self.error_rate = rate;
        self.error = ErrorKind::TooManyRequests {
            retry_after_seconds,
        };
        self
    }

    pub fn timeouts(mut self, rate: f64, timeout: Timeout) -> FaultRule {
        self.timeout_rate = rate;
        self.timeout = timeout;
        self
    }

    pub fn latency(mut self, latency: Duration) -> FaultRule {
        self.latency = latency;
        self
    }

    fn matches(&self, verb: &str, resource: &str) -> bool {
        self.verb.as_deref().is_none_or(|v| v == verb)
            && self.resource.as_deref().is_none_or(|r| r == resource)
    }
}

/// The active rules and the random source.
pub struct Faults {
    rules: RwLock<Vec<FaultRule>>,
    rng: Mutex<u64>,
}

/// What to do with one request.
enum Action {
    Fail(ErrorKind),
    Time(Timeout),
}

impl Faults {
    /// No rules; random choices from `seed`, or from a random seed when `None`.
    pub fn new(seed: Option<u64>) -> Faults {
        let seed = seed.unwrap_or_else(|| {
            let mut b = [0u8; 8];
            crate::store::random_bytes(&mut b);
            u64::from_le_bytes(b)
        });
        Faults {
            rules: RwLock::new(Vec::new()),
            rng: Mutex::new(seed),
        }
    }

    /// Replace every rule.
    pub fn set(&self, rules: Vec<FaultRule>) {
        match self.rules.write() {
            Ok(mut g) => *g = rules,
            Err(p) => *p.into_inner() = rules,
        }
    }

    /// Restart the random sequence.
    pub fn reseed(&self, seed: u64) {
        match self.rng.lock() {
            Ok(mut g) => *g = seed,
            Err(p) => *p.into_inner() = seed,
        }
    }

    pub fn rules(&self) -> Vec<FaultRule> {
        match self.rules.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// A uniform number in [0, 1) (splitmix64).
    fn roll(&self) -> f64 {
        let mut g = match self.rng.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = g.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *g;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn hit(&self, rate: f64) -> bool {
        rate > 0.0 && (rate >= 1.0 || self.roll() < rate)
    }

    /// Decide the latency and the action for one request; rules apply in order, latencies add
    /// up, and the first rule that fires decides the outcome.
    fn decide(&self, verb: &str, resource: &str) -> (Duration, Option<Action>) {
        let rules = match self.rules.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut delay = Duration::ZERO;
        let mut action = None;
        for r in rules.iter().filter(|r| r.matches(verb, resource)) {
            delay += r.latency;
            if action.is_none() {
                if self.hit(r.error_rate) {
                    action = Some(Action::Fail(r.error));
                } else if self.hit(r.timeout_rate) {
                    action = Some(Action::Time(r.timeout));
                }
            }
        }
        (delay, action)
    }

    /// Apply the rules to a request: waits for added latency, and returns the response to send
    /// instead of serving the request, if any.
    pub async fn inject(&self, verb: &str, resource: &str) -> Option<Response> {
        let (delay, action) = self.decide(verb, resource);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match action? {
            Action::Fail(ErrorKind::Internal) => {
                let e = ApiError::new(
                    500,
                    "InternalError",
                    "Internal error occurred: injected fault",
                )
                .with_details(json!({"causes": [{"message": "injected fault"}]}));
                Some(json_response(500, &e.to_status()))
            }
            Action::Fail(ErrorKind::TooManyRequests {
                retry_after_seconds,
            }) => {
                let e = ApiError::new(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                )
                .with_details(json!({"retryAfterSeconds": retry_after_seconds}));
                let mut r = json_response(429, &e.to_status());
                if let Ok(v) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                Some(r)
            }
            Action::Time(Timeout::Hang) => {
                std::future::pending::<()>().await;
                None
            }
            Action::Time(Timeout::After(d)) => {
                tokio::time::sleep(d).await;
                let e = ApiError::new(
                    504,
                    "Timeout",
                    "Timeout: request did not complete within requested timeout - context deadline exceeded",
                )
                .with_details(json!({}));
                Some(json_response(504, &e.to_status()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_choices_repeat() {
        let rule = FaultRule::new(Some("get"), None).internal_errors(0.5);
        let run = || {
            let f = Faults::new(Some(7));
            f.set(vec![rule.clone()]);
            (0..64)
                .map(|_| f.decide("get", "pods").1.is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
    }

    #[test]
    fn rules_match_verb_and_resource() {
        let f = Faults::new(Some(1));
        f.set(vec![
            FaultRule::new(Some("get"), Some("configmaps"))
                .internal_errors(1.0)
                .latency(Duration::from_millis(5)),
        ]);
        assert!(f.decide("get", "configmaps").1.is_some());
        assert!(f.decide("list", "configmaps").1.is_none());
        assert!(f.decide("get", "secrets").1.is_none());
        assert_eq!(f.decide("get", "configmaps").0, Duration::from_millis(5));
    }
}
