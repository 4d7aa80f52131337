//! Object storage: JSON objects keyed by storage+namespace+name, one global resourceVersion
//! counter (like the etcd revision), an event log with bounded retention, and a broadcast
//! channel feeding watches.
//!
//! Each committed object version is one immutable `Arc<Value>`, shared by the object map,
//! the event log and every watcher, so retention costs only the versions that were replaced.
//! Small indexes (uids, owner uid -> dependents, objects being deleted, objects per storage)
//! let the controllers work without scanning or copying the store.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
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
    /// The committed version (shared with the object map while it is current).
    pub object: Arc<Value>,
    /// The previous state, so selector watches can turn MODIFIED into ADDED/DELETED.
    pub old: Option<Arc<Value>>,
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

/// A stored object whose owners are not all present.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub key: Key,
    pub object: Arc<Value>,
    /// Owner uids no stored object has.
    pub dead: Vec<String>,
    /// How many of its owner references point at stored objects.
    pub alive: usize,
}

#[derive(Default)]
struct Indexes {
    /// uid -> how many stored objects carry it.
    uids: HashMap<String, u32>,
    /// owner uid -> the objects referencing it.
    dependents: HashMap<String, BTreeSet<Key>>,
    /// Objects with a deletionTimestamp.
    deleting: BTreeSet<Key>,
    /// storage -> object count, to find a namespace's contents without a full scan.
    storages: BTreeMap<String, usize>,
}

impl Indexes {
    fn add(&mut self, key: &Key, obj: &Value) {
        let uid = str_at(obj, "uid");
        if !uid.is_empty() {
            *self.uids.entry(uid.to_string()).or_default() += 1;
        }
        for owner in owner_uids(obj) {
            self.dependents
                .entry(owner.to_string())
                .or_default()
                .insert(key.clone());
        }
        if deleting(obj) {
            self.deleting.insert(key.clone());
        }
    }

    fn remove(&mut self, key: &Key, obj: &Value) {
        let uid = str_at(obj, "uid");
        if let Some(n) = self.uids.get_mut(uid) {
            *n -= 1;
            if *n == 0 {
                self.uids.remove(uid);
            }
        }
        for owner in owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(owner) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
        self.deleting.remove(key);
    }
}

fn str_at<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

fn deleting(obj: &Value) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some()
}

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Arc<Value>>,
    index: Indexes,
    log: VecDeque<Arc<Event>>,
    /// A watch or continue token from an RV below this is too old.
    floor: u64,
}

impl Inner {
    fn insert(&mut self, key: &Key, obj: Arc<Value>) {
        if let Some(prev) = self.objects.insert(key.clone(), obj.clone()) {
            self.index.remove(key, &prev);
        } else {
            *self.index.storages.entry(key.storage.clone()).or_default() += 1;
        }
        self.index.add(key, &obj);
    }

    fn remove(&mut self, key: &Key) {
        if let Some(prev) = self.objects.remove(key) {
            self.index.remove(key, &prev);
            if let Some(n) = self.index.storages.get_mut(&key.storage) {
                *n -= 1;
                if *n == 0 {
                    self.index.storages.remove(&key.storage);
                }
            }
        }
    }

    /// Objects of one storage (and namespace), in key order, without touching the rest.
    fn range<'a>(
        &'a self,
        storage: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Arc<Value>)> + 'a {
        let start = Key::new(storage, namespace.unwrap_or(""), "");
        self.objects
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(move |(k, _)| {
                k.storage == storage && namespace.is_none_or(|n| k.namespace == n)
            })
    }
}

/// Read access to the stored objects while a `mutate_seeing` holds the lock.
pub struct View<'a>(&'a Inner);

impl View<'_> {
    /// Objects of one storage in every namespace.
    pub fn list<'s>(&'s self, storage: &'s str) -> impl Iterator<Item = (&'s Key, &'s Value)> + 's {
        self.0.range(storage, None).map(|(k, v)| (k, &**v))
    }
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
                index: Indexes::default(),
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

    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    /// Objects of one storage, optionally in one namespace, in key order, plus the RV now.
    pub fn list(&self, storage: &str, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let g = self.lock();
        let items = g
            .range(storage, namespace)
            .map(|(_, v)| v.clone())
            .collect();
        (items, g.rv)
    }

    /// Every stored object (shared, not copied).
    pub fn all(&self) -> Vec<(Key, Arc<Value>)> {
        self.lock()
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Keys of one storage, optionally in one namespace.
    pub fn keys(&self, storage: &str, namespace: Option<&str>) -> Vec<Key> {
        self.lock()
            .range(storage, namespace)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Keys of every namespaced object in `namespace`.
    pub fn keys_in_namespace(&self, namespace: &str) -> Vec<Key> {
        if namespace.is_empty() {
            return Vec::new();
        }
        let g = self.lock();
        g.index
            .storages
            .keys()
            .flat_map(|st| g.range(st, Some(namespace)).map(|(k, _)| k.clone()))
            .collect()
    }

    /// Objects with a deletionTimestamp, in key order.
    pub fn deleting(&self) -> Vec<(Key, Arc<Value>)> {
        let g = self.lock();
        g.index
            .deleting
            .iter()
            .filter_map(|k| g.objects.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// Objects with an owner reference to `uid`, in key order.
    pub fn dependents(&self, uid: &str) -> Vec<(Key, Arc<Value>)> {
        let g = self.lock();
        g.index
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|k| g.objects.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// Objects with at least one owner reference to a uid no stored object has, in key order.
    pub fn orphans(&self) -> Vec<Orphan> {
        let g = self.lock();
        let idx = &g.index;
        let keys: BTreeSet<&Key> = idx
            .dependents
            .iter()
            .filter(|(uid, _)| !idx.uids.contains_key(uid.as_str()))
            .flat_map(|(_, ks)| ks.iter())
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let obj = g.objects.get(k)?;
                let (mut alive, mut dead) = (0, Vec::new());
                for u in owner_uids(obj) {
                    if idx.uids.contains_key(u) {
                        alive += 1;
                    } else {
                        dead.push(u.to_string());
                    }
                }
                Some(Orphan {
                    key: k.clone(),
                    object: obj.clone(),
                    dead,
                    alive,
                })
            })
            .collect()
    }

    /// Run `f` on the current state of `key` and commit what it decides, atomically.
    /// Writes equal to the stored object (ignoring resourceVersion and managedFields times)
    /// keep the stored resourceVersion and emit nothing.
    pub fn mutate<F>(&self, key: &Key, dry_run: bool, f: F) -> Result<Outcome, ApiError>
    where
        F: FnOnce(Option<&Value>) -> Result<Change, ApiError>,
    {
        self.mutate_seeing(key, dry_run, |old, _| f(old))
    }

    /// `mutate`, where `f` also sees the other stored objects under the same lock, so a
    /// decision that depends on them (a free cluster IP) cannot race another write.
    pub fn mutate_seeing<F>(&self, key: &Key, dry_run: bool, f: F) -> Result<Outcome, ApiError>
    where
        F: FnOnce(Option<&Value>, &View<'_>) -> Result<Change, ApiError>,
    {
        let mut g = self.lock();
        let old = g.objects.get(key).cloned();
        let decided = f(old.as_deref(), &View(&g))?;
        match decided {
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
                        object: Value::clone(o),
                        created: false,
                        removed: false,
                        changed: false,
                    });
                }
                if dry_run {
                    let rv = old
                        .as_deref()
                        .and_then(resource_version)
                        .unwrap_or_default();
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
                let kind = if old.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                let created = old.is_none();
                let shared = Arc::new(new);
                g.insert(key, shared.clone());
                let object = Value::clone(&shared);
                self.record(&mut g, kind, key, shared, old);
                Ok(Outcome {
                    object,
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
                g.remove(key);
                let shared = Arc::new(last);
                let object = Value::clone(&shared);
                self.record(&mut g, EventType::Deleted, key, shared, old);
                Ok(Outcome {
                    object,
                    created: false,
                    removed: true,
                    changed: true,
                })
            }
        }
    }

    fn record(
        &self,
        g: &mut Inner,
        kind: EventType,
        key: &Key,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
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
        // The log is in RV order: skip to the first event after `rv`.
        let start = g.log.partition_point(|e| e.rv <= rv);
        let past = g.log.range(start..).cloned().collect();
        Ok((past, self.tx.subscribe()))
    }

    /// The current objects of a storage, the RV they were read at, and a receiver for what follows.
    pub fn watch_snapshot(
        &self,
        storage: &str,
        namespace: Option<&str>,
    ) -> (Vec<Arc<Value>>, u64, broadcast::Receiver<Notice>) {
        let g = self.lock();
        let items = g
            .range(storage, namespace)
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

/// Equality ignoring what a no-op write may legitimately differ in (resourceVersion and
/// managedFields times), compared in place without copying either object.
fn same_content(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => eq_maps(x, y, None, |k, v, w| {
            if k == "metadata" {
                same_metadata(v, w)
            } else {
                v == w
            }
        }),
        _ => a == b,
    }
}

fn same_metadata(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => eq_maps(x, y, Some("resourceVersion"), |k, v, w| {
            match (k, v.as_array(), w.as_array()) {
                ("managedFields", Some(p), Some(q)) => {
                    p.len() == q.len()
                        && p.iter()
                            .zip(q)
                            .all(|(e, f)| match (e.as_object(), f.as_object()) {
                                (Some(e), Some(f)) => eq_maps(e, f, Some("time"), |_, v, w| v == w),
                                _ => e == f,
                            })
                }
                _ => v == w,
            }
        }),
        _ => a == b,
    }
}

/// Map equality (order-insensitive, as `Value` equality is), ignoring the key `skip`.
fn eq_maps(
    x: &serde_json::Map<String, Value>,
    y: &serde_json::Map<String, Value>,
    skip: Option<&str>,
    eq: impl Fn(&str, &Value, &Value) -> bool,
) -> bool {
    let skipped = |k: &str| skip == Some(k);
    let len = |m: &serde_json::Map<String, Value>| {
        m.len() - skip.map_or(0, |k| usize::from(m.contains_key(k)))
    };
    len(x) == len(y)
        && x.iter()
            .filter(|(k, _)| !skipped(k))
            .all(|(k, v)| y.get(k).is_some_and(|w| eq(k, v, w)))
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
    fn indexes_follow_writes_and_versions_are_shared() {
        let s = Store::new(100);
        let obj = |name: &str, uid: &str, owner: Option<&str>| {
            let mut o = json!({"metadata":{"name":name,"namespace":"ns","uid":uid}});
            if let Some(ou) = owner {
                o["metadata"]["ownerReferences"] = json!([{"uid": ou, "name": "o"}]);
            }
            o
        };
        let write = |k: &Key, v: Value| {
            s.mutate(k, false, |_| Ok(Change::Put(v)))
                .map_err(|e| e.to_string())
        };
        let owner = Key::new("apps/replicasets", "ns", "rs");
        let dep = Key::new("/pods", "ns", "p");
        assert!(write(&owner, obj("rs", "u1", None)).is_ok());
        assert!(write(&dep, obj("p", "u2", Some("u1"))).is_ok());
        assert_eq!(s.dependents("u1").len(), 1);
        assert!(s.orphans().is_empty());
        assert_eq!(s.keys_in_namespace("ns").len(), 2);
        assert_eq!(s.keys("/pods", Some("ns")), vec![dep.clone()]);
        // The stored version and the event's object are one allocation.
        let past = s.watch_from(0).map(|(p, _)| p).unwrap_or_default();
        let stored = s.get(&dep);
        assert!(
            past.last()
                .zip(stored)
                .is_some_and(|(e, v)| Arc::ptr_eq(&e.object, &v))
        );
        let mut marked = obj("rs", "u1", None);
        marked["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(write(&owner, marked).is_ok());
        assert_eq!(s.deleting().len(), 1);
        assert!(
            s.mutate(&owner, false, |o| Ok(Change::Remove(
                o.cloned().unwrap_or_default()
            )))
            .is_ok()
        );
        assert!(s.deleting().is_empty());
        let orphans = s.orphans();
        assert_eq!(orphans.len(), 1);
        assert_eq!(
            (orphans[0].alive, orphans[0].dead.clone()),
            (0, vec!["u1".to_string()])
        );
    }

    #[test]
    fn noop_detection_ignores_rv_and_managed_field_times() {
        let s = Store::new(100);
        let key = Key::new("/configmaps", "default", "m");
        let v = |t: &str, d: &str| json!({"metadata":{"name":"m","managedFields":[{"manager":"a","time":t}]},"data":{"k":d}});
        let w = |o: Value| {
            s.mutate(&key, false, |_| Ok(Change::Put(o)))
                .map(|o| o.changed)
        };
        assert!(matches!(w(v("t1", "1")), Ok(true)));
        assert!(matches!(w(v("t2", "1")), Ok(false)));
        assert!(matches!(w(v("t2", "2")), Ok(true)));
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
