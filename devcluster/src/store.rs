//! Object storage: JSON objects keyed by storage+namespace+name, one global resourceVersion
//! counter (like the etcd revision), an event log with bounded retention, and a broadcast
//! channel feeding watches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

use crate::status::ApiError;

/// Where an object lives: storage name (`<group>/<plural>`), namespace ("" when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub storage: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(storage: &str, namespace: &str, name: &str) -> Key {
        Key {
            storage: storage.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub key: Key,
    pub object: Value,
    /// The previous state, so selector watches can turn MODIFIED into ADDED/DELETED.
    pub old: Option<Value>,
}

/// What a watcher receives.
#[derive(Debug, Clone)]
pub enum Notice {
    Event(Arc<Event>),
    /// The log was compacted by the test hook: open watches end with an in-stream 410.
    Compacted,
}

/// What a mutation closure decides.
pub enum Change {
    Put(Value),
    /// Remove the object; the value is its last state (sent with the DELETED event).
    Remove(Value),
    /// Leave everything as is; the value is returned to the caller.
    Keep(Value),
}

/// Result of a mutation.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub object: Value,
    pub created: bool,
    pub removed: bool,
    /// False for no-op writes and dry runs.
    pub changed: bool,
}

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: VecDeque<Arc<Event>>,
    /// A watch or continue token from an RV below this is too old.
    floor: u64,
}

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Notice>,
    retention: usize,
}

/// The oldest resourceVersion still served, when a request asks for an older one.
#[derive(Debug, Clone, Copy)]
pub struct TooOld {
    pub floor: u64,
}

impl Store {
    pub fn new(retention: usize) -> Store {
        let (tx, _) = broadcast::channel(8192);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                log: VecDeque::new(),
                floor: 0,
            }),
            tx,
            retention: retention.max(16),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (each write is one insert).
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn floor(&self) -> u64 {
        self.lock().floor
    }

    pub fn get(&self, key: &Key) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }

    /// Objects of one storage, optionally in one namespace, in key order, plus the RV now.
    pub fn list(&self, storage: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let g = self.lock();
        let items = g
            .objects
            .iter()
            .filter(|(k, _)| k.storage == storage && namespace.is_none_or(|n| k.namespace == n))
            .map(|(_, v)| v.clone())
            .collect();
        (items, g.rv)
    }

    /// Every stored object (controllers scan this).
    pub fn all(&self) -> Vec<(Key, Value)> {
        self.lock()
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Run `f` on the current state of `key` and commit what it decides, atomically.
    /// Writes equal to the stored object (ignoring resourceVersion and managedFields times)
    /// keep the stored resourceVersion and emit nothing.
    pub fn mutate<F>(&self, key: &Key, dry_run: bool, f: F) -> Result<Outcome, ApiError>
    where
        F: FnOnce(Option<&Value>) -> Result<Change, ApiError>,
    {
        let mut g = self.lock();
        let old = g.objects.get(key).cloned();
        match f(old.as_ref())? {
            Change::Keep(v) => Ok(Outcome {
                object: v,
                created: false,
                removed: false,
                changed: false,
            }),
            Change::Put(mut new) => {
                if let Some(o) = &old
                    && same_content(o, &new)
                {
                    return Ok(Outcome {
                        object: o.clone(),
                        created: false,
                        removed: false,
                        changed: false,
                    });
                }
                if dry_run {
                    let rv = old.as_ref().and_then(resource_version).unwrap_or_default();
                    if !rv.is_empty() {
                        set_rv_str(&mut new, &rv);
                    }
                    return Ok(Outcome {
                        object: new,
                        created: old.is_none(),
                        removed: false,
                        changed: false,
                    });
                }
                g.rv += 1;
                let rv = g.rv;
                set_rv_str(&mut new, &rv.to_string());
                g.objects.insert(key.clone(), new.clone());
                let kind = if old.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                let created = old.is_none();
                self.record(&mut g, kind, key, new.clone(), old);
                Ok(Outcome {
                    object: new,
                    created,
                    removed: false,
                    changed: true,
                })
            }
            Change::Remove(mut last) => {
                if dry_run || old.is_none() {
                    return Ok(Outcome {
                        object: last,
                        created: false,
                        removed: true,
                        changed: false,
                    });
                }
                g.rv += 1;
                let rv = g.rv;
                set_rv_str(&mut last, &rv.to_string());
                g.objects.remove(key);
                self.record(&mut g, EventType::Deleted, key, last.clone(), old);
                Ok(Outcome {
                    object: last,
                    created: false,
                    removed: true,
                    changed: true,
                })
            }
        }
    }

    fn record(&self, g: &mut Inner, kind: EventType, key: &Key, object: Value, old: Option<Value>) {
        let ev = Arc::new(Event {
            rv: g.rv,
            kind,
            key: key.clone(),
            object,
            old,
        });
        g.log.push_back(ev.clone());
        while g.log.len() > self.retention {
            if let Some(front) = g.log.pop_front() {
                g.floor = front.rv;
            }
        }
        // Sent under the lock so subscribers see events in commit order with no gaps.
        let _ = self.tx.send(Notice::Event(ev));
    }

    /// Events after `rv` that are still retained, and a receiver for what follows.
    pub fn watch_from(
        &self,
        rv: u64,
    ) -> Result<(Vec<Arc<Event>>, broadcast::Receiver<Notice>), TooOld> {
        let g = self.lock();
        if rv < g.floor {
            return Err(TooOld { floor: g.floor });
        }
        let past = g.log.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((past, self.tx.subscribe()))
    }

    /// The current objects of a storage, the RV they were read at, and a receiver for what follows.
    pub fn watch_snapshot(&self, storage: &str) -> (Vec<Value>, u64, broadcast::Receiver<Notice>) {
        let g = self.lock();
        let items = g
            .objects
            .iter()
            .filter(|(k, _)| k.storage == storage)
            .map(|(_, v)| v.clone())
            .collect();
        (items, g.rv, self.tx.subscribe())
    }

    /// Subscribe to future changes only.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.tx.subscribe()
    }

    /// Drop the event log: watches and continue tokens from before now get 410 Expired.
    /// The counter moves by one so a fresh list yields an RV that is still valid.
    pub fn compact(&self) {
        let mut g = self.lock();
        g.rv += 1;
        g.floor = g.rv;
        g.log.clear();
        let _ = self.tx.send(Notice::Compacted);
    }
}

pub fn resource_version(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn set_rv_str(obj: &mut Value, rv: &str) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// Equality ignoring what a no-op write may legitimately differ in.
fn same_content(a: &Value, b: &Value) -> bool {
    normalized(a) == normalized(b)
}

fn normalized(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        if let Some(mf) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
            for e in mf {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                }
            }
        }
    }
    v
}

/// A random UUIDv4.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub fn random_bytes(buf: &mut [u8]) {
    use ring::rand::SecureRandom;
    // The system RNG failing is not recoverable in any useful way; fall back to time bits.
    if ring::rand::SystemRandom::new().fill(buf).is_err() {
        let t = unix_nanos();
        for (i, x) in buf.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

pub fn unix_seconds() -> i64 {
    (unix_nanos() / 1_000_000_000) as i64
}

/// RFC 3339 with second precision and `Z`, as metav1.Time serialises.
pub fn now_rfc3339() -> String {
    format_rfc3339(unix_seconds())
}

pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Seconds since the epoch of an RFC 3339 `YYYY-MM-DDTHH:MM:SS...` timestamp in UTC.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

// Howard Hinnant's civil calendar algorithms.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(s: &Store, name: &str, data: &str) -> Outcome {
        let key = Key::new("/configmaps", "default", name);
        let obj = json!({"metadata":{"name":name,"namespace":"default"},"data":{"a":data}});
        match s.mutate(&key, false, |_| Ok(Change::Put(obj))) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn rv_is_global_and_noop_keeps_it() {
        let s = Store::new(100);
        let a = put(&s, "a", "1");
        let b = put(&s, "b", "1");
        let ra = resource_version(&a.object).unwrap_or_default();
        let rb = resource_version(&b.object).unwrap_or_default();
        assert!(rb.parse::<u64>().unwrap_or(0) > ra.parse::<u64>().unwrap_or(0));
        let again = put(&s, "a", "1");
        assert!(!again.changed);
        assert_eq!(resource_version(&again.object), Some(ra));
        let changed = put(&s, "a", "2");
        assert!(changed.changed);
        assert_eq!(
            s.current_rv().to_string(),
            resource_version(&changed.object).unwrap_or_default()
        );
    }

    #[test]
    fn dry_run_changes_nothing() {
        let s = Store::new(100);
        let before = s.current_rv();
        let key = Key::new("/configmaps", "default", "x");
        let out = s
            .mutate(&key, true, |_| {
                Ok(Change::Put(json!({"metadata":{"name":"x"}})))
            })
            .map_err(|e| e.to_string());
        assert!(out.is_ok_and(|o| o.created && !o.changed));
        assert_eq!(s.current_rv(), before);
        assert!(s.get(&key).is_none());
    }

    #[test]
    fn retention_and_compaction_raise_the_floor() {
        let s = Store::new(16);
        for i in 0..40 {
            put(&s, "a", &i.to_string());
        }
        assert!(s.watch_from(2).is_err());
        let now = s.current_rv();
        assert!(s.watch_from(now).is_ok());
        s.compact();
        assert!(s.watch_from(now).is_err());
        assert!(s.watch_from(s.current_rv()).is_ok());
    }

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
