//! Discovery and REST mapping from the cluster: for an `apiVersion` and `kind`, the
//! resource's plural and whether it is namespaced, as the API server serves them.
//!
//! Answers are cached per group/version. A kind missing from the cache refreshes its
//! group/version once (a CRD created a moment ago), so nothing is hard-coded and a
//! steady state costs no discovery requests.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::discovery::ApiResource;

/// The REST mapping of one kind.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// A failed look-up.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The cluster does not serve this kind at this apiVersion (also after a refresh).
    #[error("the cluster serves no kind {kind:?} in apiVersion {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    /// The discovery request itself failed.
    #[error("discovery of apiVersion {api_version:?} failed: {message}")]
    Failed {
        api_version: String,
        /// HTTP status when the server answered.
        code: Option<u16>,
        message: String,
    },
}

impl DiscoveryError {
    /// Worth retrying later (the server was unreachable, overloaded or failing).
    pub fn is_transient(&self) -> bool {
        match self {
            DiscoveryError::UnknownKind { .. } => false,
            DiscoveryError::Failed { code, .. } => {
                matches!(code, None | Some(429) | Some(500..=599))
            }
        }
    }
}

/// Shared, cheap to clone; one per process is enough (what the cluster serves does not
/// depend on who asks).
#[derive(Clone, Default)]
pub struct Discovery {
    // apiVersion -> the kinds it serves.
    by_group_version: Arc<RwLock<HashMap<String, Arc<Vec<Resolved>>>>>,
    // group -> its preferred version.
    preferred: Arc<RwLock<HashMap<String, String>>>,
}

impl Discovery {
    pub fn new() -> Discovery {
        Discovery::default()
    }

    /// Cached; on a miss refreshes that group/version once (a CRD just created).
    pub async fn resolve(
        &self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
    ) -> Result<Resolved, DiscoveryError> {
        if let Some(r) = self.cached(api_version, kind) {
            return Ok(r);
        }
        let unknown = || DiscoveryError::UnknownKind {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        };
        let Some(list) = fetch(client, api_version).await? else {
            // Not served (yet): nothing to cache, the next miss asks again.
            return Err(unknown());
        };
        let resolved = Arc::new(mappings(api_version, &list));
        let found = resolved.iter().find(|r| r.resource.kind == kind).cloned();
        write(&self.by_group_version).insert(api_version.to_owned(), resolved);
        found.ok_or_else(unknown)
    }

    /// The version the cluster prefers for `group` ("" is the core group, always "v1").
    /// Cached; refreshed once when the group is not known yet.
    pub async fn preferred_version(
        &self,
        client: &kube::Client,
        group: &str,
    ) -> Result<String, DiscoveryError> {
        if group.is_empty() {
            return Ok("v1".to_owned());
        }
        if let Some(v) = read(&self.preferred).get(group) {
            return Ok(v.clone());
        }
        let groups = client
            .list_api_groups()
            .await
            .map_err(|e| failed(group, &e))?;
        let mut map = write(&self.preferred);
        for g in groups.groups {
            let v = g
                .preferred_version
                .map(|p| p.version)
                .or_else(|| g.versions.first().map(|v| v.version.clone()));
            if let Some(v) = v {
                map.insert(g.name, v);
            }
        }
        map.get(group)
            .cloned()
            .ok_or_else(|| DiscoveryError::UnknownKind {
                api_version: format!("{group}/*"),
                kind: String::new(),
            })
    }

    /// Drops everything cached, e.g. after a CRD was deleted.
    pub fn clear(&self) {
        write(&self.by_group_version).clear();
        write(&self.preferred).clear();
    }

    fn cached(&self, api_version: &str, kind: &str) -> Option<Resolved> {
        read(&self.by_group_version)
            .get(api_version)?
            .iter()
            .find(|r| r.resource.kind == kind)
            .cloned()
    }
}

// A poisoned lock only means another task panicked mid-insert of a whole entry; the map
// itself is still consistent.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// The served resources of one group/version; `None` when the cluster does not serve it.
async fn fetch(
    client: &kube::Client,
    api_version: &str,
) -> Result<Option<APIResourceList>, DiscoveryError> {
    let res = if api_version.contains('/') {
        client.list_api_group_resources(api_version).await
    } else {
        client.list_core_api_resources(api_version).await
    };
    match res {
        Ok(l) => Ok(Some(l)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(failed(api_version, &e)),
    }
}

fn failed(api_version: &str, e: &kube::Error) -> DiscoveryError {
    let (code, message) = match e {
        kube::Error::Api(s) => (Some(s.code), format!("{} ({})", s.reason, s.code)),
        other => (None, other.to_string()),
    };
    DiscoveryError::Failed {
        api_version: api_version.to_owned(),
        code,
        message,
    }
}

/// Resources (not subresources) of a discovery document as REST mappings.
fn mappings(api_version: &str, list: &APIResourceList) -> Vec<Resolved> {
    let (group, version) = split_api_version(api_version);
    list.resources
        .iter()
        .filter(|r| !r.name.contains('/'))
        .map(|r| Resolved {
            resource: ApiResource {
                group: group.to_owned(),
                version: version.to_owned(),
                api_version: api_version.to_owned(),
                kind: r.kind.clone(),
                plural: r.name.clone(),
            },
            namespaced: r.namespaced,
        })
        .collect()
}

/// `apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn res(name: &str, kind: &str, namespaced: bool) -> APIResource {
        APIResource {
            name: name.into(),
            kind: kind.into(),
            namespaced,
            singular_name: String::new(),
            verbs: vec!["get".into()],
            ..Default::default()
        }
    }

    #[test]
    fn subresources_are_not_kinds_and_scope_comes_from_the_document() {
        let list = APIResourceList {
            group_version: "apps/v1".into(),
            resources: vec![
                res("deployments", "Deployment", true),
                res("deployments/status", "Deployment", true),
                res("widgets", "Widget", false),
            ],
        };
        let m = mappings("apps/v1", &list);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].resource.plural, "deployments");
        assert_eq!(m[0].resource.group, "apps");
        assert_eq!(m[0].resource.version, "v1");
        assert!(m[0].namespaced);
        assert_eq!(m[1].resource.kind, "Widget");
        assert!(!m[1].namespaced);
    }

    #[test]
    fn core_group_is_empty() {
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(
            split_api_version("apiextensions.k8s.io/v1"),
            ("apiextensions.k8s.io", "v1")
        );
    }
}
