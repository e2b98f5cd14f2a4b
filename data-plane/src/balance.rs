//! Choosing among candidate credentials, and remembering how each one behaves.
//!
//! - **Choice**: candidates that are cooling down (circuit open) or rate limited are skipped;
//!   among the rest, two are drawn at random in proportion to `metadata.weight` and the one with
//!   the lower load score (in-flight requests × latency EWMA) wins, unless the two are within
//!   25% of each other, in which case the first draw wins (so with even load the split follows
//!   the weights). The remaining candidates follow in weighted random order, for failover.
//! - **Circuit breaker**: `FAILURE_THRESHOLD` consecutive failures open the circuit for a
//!   cool-down (30 s, doubling on each re-trip up to 5 min); then one probe request is let
//!   through (half-open): success closes the circuit, failure re-opens it.
//! - **Rate limits**: a 429 marks the credential limited until its reset (`retry-after`,
//!   `retry-after-ms`, `x-ratelimit-reset-*`, `anthropic-ratelimit-*-reset`).
//!
//! State lives here, outside the snapshot, keyed by credential id; it survives snapshot swaps
//! while the credential's configuration is unchanged. Time comes from a `Clock`, so tests need
//! no sleeps.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use rand::Rng;

use crate::routing::Candidate;
use crate::snapshot::Credential;
use crate::upstream::AttemptError;

pub const FAILURE_THRESHOLD: u32 = 5;
pub const BASE_COOLDOWN_MS: i64 = 30_000;
pub const MAX_COOLDOWN_MS: i64 = 300_000;
const EWMA_ALPHA: f64 = 0.2;
/// An estimate fades with age (toward zero), so a credential that was slow a while ago, or
/// was never measured, gets tried again instead of being starved by a faster one.
const EWMA_DECAY_MS: f64 = 10_000.0;
/// Latency assumed before the first observation.
const INITIAL_LATENCY_MS: f64 = 500.0;

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::record::now_ms()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    /// Ejected until the given time.
    Open {
        until_ms: i64,
    },
    /// Cool-down over: one probe may go (`probing` while it is in flight).
    HalfOpen {
        probing: bool,
    },
}

#[derive(Debug)]
struct Health {
    circuit: Circuit,
    consecutive_failures: u32,
    trips: u32,
    latency_ewma_ms: f64,
    /// When the EWMA last took an observation (`None`: never).
    observed_ms: Option<i64>,
    limited_until_ms: i64,
}

#[derive(Debug)]
pub struct CredState {
    fingerprint: u64,
    in_flight: AtomicI64,
    health: Mutex<Health>,
    name: String,
    provider: String,
    org_id: String,
}

impl CredState {
    fn new(c: &Credential) -> CredState {
        CredState {
            fingerprint: c.fingerprint,
            in_flight: AtomicI64::new(0),
            health: Mutex::new(Health {
                circuit: Circuit::Closed,
                consecutive_failures: 0,
                trips: 0,
                latency_ewma_ms: INITIAL_LATENCY_MS,
                observed_ms: None,
                limited_until_ms: 0,
            }),
            name: c.name.clone(),
            provider: c.provider_type.clone(),
            org_id: c.org_id.clone(),
        }
    }
}

/// Why a candidate cannot be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    CoolingDown { until_ms: i64 },
    RateLimited { until_ms: i64 },
}

impl Unavailable {
    pub fn until_ms(self) -> i64 {
        match self {
            Unavailable::CoolingDown { until_ms } | Unavailable::RateLimited { until_ms } => {
                until_ms
            }
        }
    }
}

pub struct Balancer {
    states: Mutex<HashMap<String, Arc<CredState>>>,
    clock: Arc<dyn Clock>,
}

impl Default for Balancer {
    fn default() -> Self {
        Balancer::with_clock(Arc::new(SystemClock))
    }
}

/// One request in flight on a credential: report how it went (dropping it counts as neither).
pub struct InFlight {
    state: Arc<CredState>,
    clock: Arc<dyn Clock>,
    started_ms: i64,
    probe: bool,
    done: bool,
}

impl InFlight {
    /// The upstream answered well: latency feeds the EWMA, the circuit closes.
    pub fn succeed(mut self) {
        let latency = (self.clock.now_ms() - self.started_ms).max(0) as f64;
        if let Ok(mut h) = self.state.health.lock() {
            h.latency_ewma_ms = match h.observed_ms {
                Some(_) => h.latency_ewma_ms * (1.0 - EWMA_ALPHA) + latency * EWMA_ALPHA,
                None => latency,
            };
            h.observed_ms = Some(self.clock.now_ms());
            h.consecutive_failures = 0;
            h.trips = 0;
            h.circuit = Circuit::Closed;
        }
        self.release();
    }

    /// The attempt failed; rate limits and credential faults are recorded, client errors are not.
    pub fn fail(mut self, e: &AttemptError) {
        let now = self.clock.now_ms();
        if let Ok(mut h) = self.state.health.lock() {
            match e {
                AttemptError::Status {
                    status, headers, ..
                } if status.as_u16() == 429 => {
                    let reset = rate_limit_reset_ms(headers, now).unwrap_or(1_000);
                    h.limited_until_ms = h.limited_until_ms.max(now + reset);
                    if let Circuit::HalfOpen { .. } = h.circuit {
                        h.circuit = Circuit::HalfOpen { probing: false };
                    }
                }
                e if counts_as_failure(e) => {
                    h.consecutive_failures += 1;
                    let trip = matches!(h.circuit, Circuit::HalfOpen { .. })
                        || h.consecutive_failures >= FAILURE_THRESHOLD;
                    if trip {
                        let cooldown = (BASE_COOLDOWN_MS << h.trips.min(4)).min(MAX_COOLDOWN_MS);
                        h.trips += 1;
                        h.circuit = Circuit::Open {
                            until_ms: now + cooldown,
                        };
                        tracing::warn!(credential = %self.state.name, provider = %self.state.provider, cooldown_ms = cooldown, "credential ejected after repeated failures");
                    }
                }
                _ => {
                    // Not the credential's fault (e.g. a 400): a probe still counts as alive.
                    if self.probe {
                        h.circuit = Circuit::Closed;
                        h.consecutive_failures = 0;
                    }
                }
            }
        }
        self.release();
    }

    fn release(&mut self) {
        if !self.done {
            self.done = true;
            self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
            if self.probe
                && let Ok(mut h) = self.state.health.lock()
                && h.circuit == (Circuit::HalfOpen { probing: true })
            {
                h.circuit = Circuit::HalfOpen { probing: false };
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

/// Failures that say something about the credential or provider (not the request).
fn counts_as_failure(e: &AttemptError) -> bool {
    match e {
        AttemptError::Connect(_) | AttemptError::Timeout(_) | AttemptError::Config(_) => true,
        AttemptError::Status { status, .. } => {
            status.is_server_error() || matches!(status.as_u16(), 401 | 403 | 408 | 529)
        }
    }
}

/// Parses a Go-style duration (`12ms`, `1s`, `6m0s`, `1h2m3.5s`) into milliseconds.
fn go_duration_ms(s: &str) -> Option<i64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            "ms"
        } else {
            match c {
                'h' => "h",
                'm' => "m",
                's' => "s",
                _ => return None,
            }
        };
        let v: f64 = num.parse().ok()?;
        num.clear();
        any = true;
        total += v * match unit {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            _ => 3_600_000.0,
        };
    }
    if !num.is_empty() {
        total += num.parse::<f64>().ok()? * 1000.0;
        any = true;
    }
    any.then_some(total.ceil() as i64)
}

/// The longest rate-limit wait a provider's headers can impose (a daily quota's reset); a
/// larger or absurd value (`retry-after-ms: 1e30`) is taken as this.
pub const MAX_RATE_LIMIT_WAIT_MS: i64 = 86_400_000;

/// How long until a rate-limited credential may be used again, from the provider's headers:
/// 0 to `MAX_RATE_LIMIT_WAIT_MS`.
pub fn rate_limit_reset_ms(h: &HeaderMap, now_ms: i64) -> Option<i64> {
    reset_hint_ms(h, now_ms).map(|ms| ms.clamp(0, MAX_RATE_LIMIT_WAIT_MS))
}

fn reset_hint_ms(h: &HeaderMap, now_ms: i64) -> Option<i64> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(ms.ceil() as i64);
    }
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            return Some((secs * 1000.0).ceil() as i64);
        }
        if let Ok(t) = httpdate::parse_http_date(v) {
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            return Some(ms.saturating_sub(now_ms));
        }
    }
    let resets: Vec<i64> = [
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
        "x-ratelimit-reset",
    ]
    .iter()
    .filter_map(|n| get(n))
    .filter_map(go_duration_ms)
    .collect();
    if let Some(m) = resets.into_iter().max() {
        return Some(m);
    }
    for n in [
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-tokens-reset",
        "anthropic-ratelimit-input-tokens-reset",
        "anthropic-ratelimit-output-tokens-reset",
    ] {
        if let Some(v) = get(n)
            && let Ok(t) = time_rfc3339_ms(v)
        {
            return Some(t.saturating_sub(now_ms));
        }
    }
    None
}

fn time_rfc3339_ms(s: &str) -> Result<i64, ()> {
    httpdate::parse_http_date(s)
        .map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        })
        .or_else(|_| rfc3339_ms(s).ok_or(()))
}

/// Minimal RFC 3339 (`2025-01-01T00:00:05Z`, optional fraction) to unix ms.
fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se) * 1000)
}

impl Balancer {
    pub fn with_clock(clock: Arc<dyn Clock>) -> Balancer {
        Balancer {
            states: Mutex::new(HashMap::new()),
            clock,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn state(&self, cred: &Credential) -> Arc<CredState> {
        let Ok(mut map) = self.states.lock() else {
            return Arc::new(CredState::new(cred));
        };
        // Looked up before inserting: `entry` would allocate a copy of the id on every call.
        if let Some(st) = map.get(cred.id.as_str())
            && st.fingerprint == cred.fingerprint
        {
            return st.clone();
        }
        let st = Arc::new(CredState::new(cred));
        map.insert(cred.id.clone(), st.clone());
        st
    }

    /// Whether a credential can take a request now (half-open: only if no probe is running).
    pub fn availability(&self, cred: &Credential) -> Result<(), Unavailable> {
        let st = self.state(cred);
        let now = self.clock.now_ms();
        let Ok(mut h) = st.health.lock() else {
            return Ok(());
        };
        if let Circuit::Open { until_ms } = h.circuit {
            if now < until_ms {
                return Err(Unavailable::CoolingDown { until_ms });
            }
            h.circuit = Circuit::HalfOpen { probing: false };
        }
        if h.circuit == (Circuit::HalfOpen { probing: true }) {
            return Err(Unavailable::CoolingDown {
                until_ms: now + 1_000,
            });
        }
        if h.limited_until_ms > now {
            return Err(Unavailable::RateLimited {
                until_ms: h.limited_until_ms,
            });
        }
        Ok(())
    }

    fn score(&self, cred: &Credential) -> f64 {
        let st = self.state(cred);
        let now = self.clock.now_ms();
        let ewma = st
            .health
            .lock()
            .map(|h| match h.observed_ms {
                Some(t) => h.latency_ewma_ms * (-((now - t).max(0) as f64) / EWMA_DECAY_MS).exp(),
                None => 0.0,
            })
            .unwrap_or(0.0);
        (st.in_flight.load(Ordering::Relaxed).max(0) as f64 + 1.0) * ewma.max(1.0)
    }

    /// Orders the usable candidates (best first); also returns those that are unavailable now,
    /// with why, for the caller to wait on or report. Takes candidates or references to them
    /// (the proxy orders its list again each round without copying it).
    pub fn order<C: Borrow<Candidate>>(
        &self,
        cands: impl IntoIterator<Item = C>,
    ) -> (Vec<C>, Vec<(C, Unavailable)>) {
        let cands = cands.into_iter();
        let mut usable = Vec::with_capacity(cands.size_hint().0);
        let mut blocked = Vec::new();
        for c in cands {
            match self.availability(&c.borrow().cred) {
                Ok(()) => usable.push(c),
                Err(u) => blocked.push((c, u)),
            }
        }
        (self.rank(usable), blocked)
    }

    fn rank<C: Borrow<Candidate>>(&self, mut cands: Vec<C>) -> Vec<C> {
        if cands.len() <= 1 {
            return cands;
        }
        let mut rng = rand::rng();
        // Weighted random permutation (Efraimidis–Spirakis): key = u^(1/weight).
        let mut keyed: Vec<(f64, C)> = cands
            .drain(..)
            .map(|c| {
                let w = c.borrow().cred.weight.max(1e-9);
                (rng.random::<f64>().powf(1.0 / w), c)
            })
            .collect();
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut ordered: Vec<C> = keyed.into_iter().map(|(_, c)| c).collect();
        // Power of two choices between the first two weighted draws.
        let (a, b) = (
            self.score(&ordered[0].borrow().cred),
            self.score(&ordered[1].borrow().cred),
        );
        if b * 1.25 < a {
            ordered.swap(0, 1);
        }
        ordered
    }

    /// Marks a request in flight. A half-open credential's first request becomes its probe.
    pub fn begin(&self, cred: &Credential) -> InFlight {
        let state = self.state(cred);
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut probe = false;
        if let Ok(mut h) = state.health.lock()
            && h.circuit == (Circuit::HalfOpen { probing: false })
        {
            h.circuit = Circuit::HalfOpen { probing: true };
            probe = true;
        }
        InFlight {
            state,
            clock: self.clock.clone(),
            started_ms: self.clock.now_ms(),
            probe,
            done: false,
        }
    }

    pub fn circuit(&self, cred: &Credential) -> Circuit {
        self.state(cred)
            .health
            .lock()
            .map(|h| h.circuit)
            .unwrap_or(Circuit::Closed)
    }

    /// Forgets the credentials that `live` (every credential id of a new configuration) does not
    /// name. Only the credentials this node has called are tracked (none on a new node), so the
    /// configuration's ids are checked against a copy of those, not collected into a set of
    /// their own (20,000 ids took 10–25 ms of a node's whole apply), and the map's lock, which
    /// the request path takes, is not held while they are read.
    pub fn forget_except<'a, I: Iterator<Item = &'a str>>(&self, live: impl FnOnce() -> I) {
        let mut gone: std::collections::HashSet<String> = match self.states.lock() {
            Ok(map) if !map.is_empty() => map.keys().cloned().collect(),
            _ => return,
        };
        for id in live() {
            if gone.remove(id) && gone.is_empty() {
                return;
            }
        }
        if gone.is_empty() {
            return;
        }
        if let Ok(mut map) = self.states.lock() {
            map.retain(|id, _| !gone.contains(id));
        }
    }

    /// Credential ids tracked.
    #[cfg(test)]
    fn tracked(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.states.lock().unwrap().keys().cloned().collect();
        ids.sort();
        ids
    }

    fn snapshot(&self) -> Vec<(String, Arc<CredState>)> {
        self.states
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    fn up(&self, s: &CredState) -> (bool, &'static str, i64, f64) {
        let now = self.clock.now_ms();
        let h = s.health.lock();
        match h {
            Ok(h) => {
                let (up, state) = match h.circuit {
                    Circuit::Open { until_ms } if until_ms > now => (false, "open"),
                    Circuit::Open { .. } | Circuit::HalfOpen { .. } => (false, "half_open"),
                    Circuit::Closed if h.limited_until_ms > now => (true, "rate_limited"),
                    Circuit::Closed => (true, "closed"),
                };
                (
                    up,
                    state,
                    s.in_flight.load(Ordering::Relaxed),
                    h.latency_ewma_ms,
                )
            }
            Err(_) => (true, "closed", 0, 0.0),
        }
    }

    /// `aiproxy_credential_up` and friends for `/metrics`.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# HELP aiproxy_credential_up Whether a credential takes traffic (0: circuit open).\n# TYPE aiproxy_credential_up gauge\n",
        );
        let mut inflight = String::from(
            "# HELP aiproxy_credential_in_flight Requests in flight per credential.\n# TYPE aiproxy_credential_in_flight gauge\n",
        );
        for (id, s) in self.snapshot() {
            let (up, state, n, _) = self.up(&s);
            let labels = format!(
                "credential_id=\"{id}\",credential=\"{}\",provider=\"{}\"",
                s.name.replace('"', "'"),
                s.provider
            );
            let _ = writeln!(
                out,
                "aiproxy_credential_up{{{labels},state=\"{state}\"}} {}",
                u8::from(up)
            );
            let _ = writeln!(inflight, "aiproxy_credential_in_flight{{{labels}}} {n}");
        }
        out + &inflight
    }

    /// Per-credential health for the control plane's `GET /api/v1/nodes`.
    pub fn details(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.snapshot()
                .into_iter()
                .map(|(id, s)| {
                    let (up, state, n, ewma) = self.up(&s);
                    serde_json::json!({"credential_id": id, "org_id": s.org_id, "name": s.name, "provider": s.provider, "up": up, "state": state, "in_flight": n, "latency_ewma_ms": ewma.round()})
                })
                .collect(),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::AtomicI64;

    use super::*;
    use crate::eligibility::Served;

    struct TestClock(AtomicI64);

    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// An OpenAI credential with secret `s` (other modules' tests use it too).
    pub(crate) fn cred(id: &str, weight: f64) -> Arc<Credential> {
        Arc::new(Credential {
            id: id.into(),
            org_id: "o".into(),
            project_id: None,
            name: id.into(),
            provider_type: "openai".into(),
            format: llm::Format::Openai,
            secret: crate::secret::Secret::new("s"),
            session_token: None,
            headers: vec![],
            api_base: None,
            models: Default::default(),
            weight,
            auth: llm::vendor::AuthStyle::Bearer,
            deployment: None,
            api_version: None,
            region: None,
            access_key_id: None,
            auth_type: None,
            organization_id: None,
            supports_streaming: true,
            fingerprint: 1,
            wire: 0,
            memo: Default::default(),
        })
    }

    fn cand(c: &Arc<Credential>) -> Candidate {
        Candidate {
            cred: c.clone(),
            served: Served {
                upstream_model: "m".into(),
                format: llm::Format::Openai,
                flavor: llm::Flavor::Chat,
                spec: None,
                custom: false,
            },
        }
    }

    fn setup() -> (Arc<TestClock>, Balancer) {
        let clock = Arc::new(TestClock(AtomicI64::new(1_000_000)));
        (clock.clone(), Balancer::with_clock(clock))
    }

    fn unavailable() -> AttemptError {
        AttemptError::Status {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            headers: Box::default(),
            body: Default::default(),
        }
    }

    #[test]
    fn credentials_gone_from_the_configuration_are_forgotten() {
        let (_, b) = setup();
        // Nothing tracked: the configuration's ids are not even read.
        b.forget_except(|| -> std::vec::IntoIter<&str> { panic!("read with nothing tracked") });
        for c in [cred("a", 1.0), cred("b", 1.0), cred("c", 1.0)] {
            b.begin(&c).succeed();
        }
        assert_eq!(b.tracked(), ["a", "b", "c"]);
        b.forget_except(|| ["x", "c", "a", "y"].into_iter());
        assert_eq!(b.tracked(), ["a", "c"]);
        b.forget_except(|| ["c", "a"].into_iter());
        assert_eq!(b.tracked(), ["a", "c"]);
        b.forget_except(std::iter::empty);
        assert!(b.tracked().is_empty());
    }

    #[test]
    fn picks_follow_weights_under_even_load() {
        let (_, b) = setup();
        let (x, y, z) = (cred("x", 1.0), cred("y", 2.0), cred("z", 5.0));
        let mut counts = HashMap::new();
        let n = 20_000;
        for _ in 0..n {
            let (order, blocked) = b.order(vec![cand(&x), cand(&y), cand(&z)]);
            assert!(blocked.is_empty());
            *counts.entry(order[0].cred.id.clone()).or_insert(0) += 1;
        }
        for (id, w) in [("x", 1.0), ("y", 2.0), ("z", 5.0)] {
            let share = counts[id] as f64 / n as f64;
            assert!(
                (share - w / 8.0).abs() < 0.02,
                "{id}: {share} vs {}",
                w / 8.0
            );
        }
    }

    #[test]
    fn a_loaded_or_slow_credential_is_avoided() {
        let (clock, b) = setup();
        let (fast, slow) = (cred("fast", 1.0), cred("slow", 1.0));
        // Slow: 2 s responses; fast: 10 ms.
        for _ in 0..20 {
            let g = b.begin(&slow);
            clock.0.fetch_add(2000, Ordering::SeqCst);
            g.succeed();
            let g = b.begin(&fast);
            clock.0.fetch_add(10, Ordering::SeqCst);
            g.succeed();
        }
        let firsts = (0..1000)
            .filter(|_| b.order(vec![cand(&fast), cand(&slow)]).0[0].cred.id == "fast")
            .count();
        assert_eq!(
            firsts, 1000,
            "the faster credential always wins a power-of-two draw against a much slower one"
        );
        // Many requests in flight on `fast` make it the worse choice.
        let guards: Vec<InFlight> = (0..500).map(|_| b.begin(&fast)).collect();
        let firsts = (0..1000)
            .filter(|_| b.order(vec![cand(&fast), cand(&slow)]).0[0].cred.id == "fast")
            .count();
        assert_eq!(firsts, 0);
        drop(guards);
        // Estimates fade: two minutes later the slow credential gets tried again.
        clock.0.fetch_add(120_000, Ordering::SeqCst);
        let slow_first = (0..2000)
            .filter(|_| b.order(vec![cand(&fast), cand(&slow)]).0[0].cred.id == "slow")
            .count();
        assert!(slow_first > 500, "{slow_first}");
    }

    #[test]
    fn circuit_opens_cools_down_and_probes() {
        let (clock, b) = setup();
        let (bad, good) = (cred("bad", 1.0), cred("good", 1.0));
        for _ in 0..FAILURE_THRESHOLD {
            b.begin(&bad).fail(&unavailable());
        }
        assert!(matches!(b.circuit(&bad), Circuit::Open { .. }));
        // Ejected: no traffic during the cool-down.
        for _ in 0..100 {
            let (order, blocked) = b.order(vec![cand(&bad), cand(&good)]);
            assert_eq!(order.len(), 1);
            assert_eq!(order[0].cred.id, "good");
            assert_eq!(blocked.len(), 1);
        }
        clock.0.fetch_add(BASE_COOLDOWN_MS - 1, Ordering::SeqCst);
        assert!(b.availability(&bad).is_err());
        clock.0.fetch_add(1, Ordering::SeqCst);
        // Half-open: exactly one probe.
        assert!(b.availability(&bad).is_ok());
        let probe = b.begin(&bad);
        assert!(
            b.availability(&bad).is_err(),
            "a second request waits for the probe"
        );
        probe.fail(&unavailable());
        let Circuit::Open { until_ms } = b.circuit(&bad) else {
            panic!("re-opened")
        };
        assert_eq!(
            until_ms - clock.now_ms(),
            2 * BASE_COOLDOWN_MS,
            "the cool-down doubles"
        );
        clock.0.fetch_add(2 * BASE_COOLDOWN_MS, Ordering::SeqCst);
        assert!(b.availability(&bad).is_ok());
        b.begin(&bad).succeed();
        assert_eq!(
            b.circuit(&bad),
            Circuit::Closed,
            "a successful probe readmits the credential"
        );
        // Client errors never trip the breaker.
        for _ in 0..20 {
            b.begin(&good).fail(&AttemptError::Status {
                status: http::StatusCode::BAD_REQUEST,
                headers: Box::default(),
                body: Default::default(),
            });
        }
        assert_eq!(b.circuit(&good), Circuit::Closed);
    }

    #[test]
    fn rate_limited_credentials_wait_for_their_reset() {
        let (clock, b) = setup();
        let c = cred("c", 1.0);
        let limited = |retry_after_ms: &str| {
            let mut h = HeaderMap::new();
            h.insert("retry-after-ms", retry_after_ms.parse().unwrap());
            AttemptError::Status {
                status: http::StatusCode::TOO_MANY_REQUESTS,
                headers: Box::new(h),
                body: Default::default(),
            }
        };
        b.begin(&c).fail(&limited("2000"));
        assert_eq!(
            b.availability(&c),
            Err(Unavailable::RateLimited {
                until_ms: clock.now_ms() + 2000
            })
        );
        assert_eq!(
            b.circuit(&c),
            Circuit::Closed,
            "a 429 is not a failure of the credential"
        );
        clock.0.fetch_add(2000, Ordering::SeqCst);
        assert!(b.availability(&c).is_ok());
        // An absurd wait is a day's, not an overflow.
        b.begin(&c).fail(&limited("1e30"));
        assert_eq!(
            b.availability(&c),
            Err(Unavailable::RateLimited {
                until_ms: clock.now_ms() + MAX_RATE_LIMIT_WAIT_MS
            })
        );
    }

    #[test]
    fn reset_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset-requests", "6m0s".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "12ms".parse().unwrap());
        assert_eq!(rate_limit_reset_ms(&h, 0), Some(360_000));
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", "1500".parse().unwrap());
        h.insert("retry-after", "9".parse().unwrap());
        assert_eq!(rate_limit_reset_ms(&h, 0), Some(1500));
        let mut h = HeaderMap::new();
        h.insert(
            "anthropic-ratelimit-requests-reset",
            "2025-01-01T00:00:05Z".parse().unwrap(),
        );
        assert_eq!(rate_limit_reset_ms(&h, 1_735_689_600_000), Some(5000));
        assert_eq!(go_duration_ms("1h2m3.5s"), Some(3_723_500));
        assert_eq!(go_duration_ms("nope"), None);
        assert_eq!(rate_limit_reset_ms(&HeaderMap::new(), 0), None);
        // Absurd values are bounded (`now + reset` overflowed on i64::MAX); past dates are 0.
        for (name, v, want) in [
            ("retry-after-ms", "1e30", MAX_RATE_LIMIT_WAIT_MS),
            ("retry-after", "-5", 0),
            ("x-ratelimit-reset", "99999999999h", MAX_RATE_LIMIT_WAIT_MS),
            (
                "anthropic-ratelimit-tokens-reset",
                "1999-01-01T00:00:00Z",
                0,
            ),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, v.parse().unwrap());
            assert_eq!(
                rate_limit_reset_ms(&h, 1_735_689_600_000),
                Some(want),
                "{name}: {v}"
            );
        }
    }

    #[test]
    fn state_survives_swaps_only_while_the_credential_is_unchanged() {
        let (_, b) = setup();
        let c = cred("c", 1.0);
        for _ in 0..FAILURE_THRESHOLD {
            b.begin(&c).fail(&unavailable());
        }
        assert!(b.availability(&c).is_err());
        let same = cred("c", 1.0);
        assert!(
            b.availability(&same).is_err(),
            "same configuration: still ejected"
        );
        let mut changed = (*c).clone();
        changed.fingerprint = 2;
        assert!(b.availability(&changed).is_ok(), "a new key starts healthy");
    }
}
