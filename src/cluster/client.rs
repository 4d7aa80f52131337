//! Clients for the reconciler's own identity and for each Application's service account,
//! all over ONE connection pool.
//!
//! `kube::Client::try_from(config)` builds a new TLS connection pool every time; with one
//! client per Application that is 1,000 pools for 1,000 apps. Here one controller client
//! owns the pool (TLS, the controller's credentials, retries), and an impersonating client
//! is a thin service in front of it that sets the `Impersonate-User` / `Impersonate-Group`
//! headers of `system:serviceaccount:NS:NAME` on every request before handing it to the
//! shared client. The API server then authorizes each request as that service account.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue};
use kube::client::Body;

/// The controller's client and the impersonating clients built on it; cheap to clone.
#[derive(Clone)]
pub struct Clients {
    shared: kube::Client,
    // One kube::Client per service account: each runs a small buffer task, and reusing it
    // keeps that to one task per identity instead of one per reconcile.
    by_account: Arc<Mutex<HashMap<(String, String), kube::Client>>>,
}

impl Clients {
    /// Builds the one shared client (and its connection pool) from the controller's
    /// configuration. Must run inside a Tokio runtime, as every `kube::Client` does.
    ///
    /// A configuration that itself impersonates (kubeconfig `as:`) is refused: its headers
    /// would be sent next to each service account's, and Kubernetes allows one identity.
    pub fn new(config: kube::Config) -> Result<Clients, kube::Error> {
        if config.auth_info.impersonate.is_some() || config.auth_info.impersonate_groups.is_some() {
            return Err(kube::Error::Service(
                "the controller's kubeconfig impersonates a user; lockstep impersonates each \
                 application's service account itself and needs the controller's own identity"
                    .into(),
            ));
        }
        Ok(Clients {
            shared: kube::Client::try_from(config)?,
            by_account: Arc::default(),
        })
    }

    /// The reconciler's own identity (its service account in the cluster).
    pub fn controller(&self) -> kube::Client {
        self.shared.clone()
    }

    /// A client that acts as `system:serviceaccount:{namespace}:{name}` (the API server
    /// gives it the groups `system:serviceaccounts` and `system:serviceaccounts:{namespace}`) on every request,
    /// over the shared pool. Repeated calls for the same account return the same client.
    /// A name that cannot be a header value gives a client whose every request fails.
    pub fn for_service_account(&self, namespace: &str, name: &str) -> kube::Client {
        let key = (namespace.to_owned(), name.to_owned());
        let mut cache = match self.by_account.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = cache.get(&key) {
            return c.clone();
        }
        let svc = Impersonating {
            inner: self.shared.clone(),
            headers: impersonation_headers(namespace, name).map(Arc::new),
        };
        let client = kube::Client::new(svc, namespace);
        cache.insert(key, client.clone());
        client
    }
}

impl Clients {
    /// Drops the cached client of an account (its Application was deleted), so that a
    /// long-running controller does not keep one per account it ever served.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut cache = match self.by_account.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache.remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// How many service-account clients are cached.
    pub fn cached_accounts(&self) -> usize {
        match self.by_account.lock() {
            Ok(g) => g.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("cached_accounts", &self.cached_accounts())
            .finish_non_exhaustive()
    }
}

/// The user name Kubernetes gives a service account.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

type Headers = Vec<(HeaderName, HeaderValue)>;

fn impersonation_headers(namespace: &str, name: &str) -> Result<Headers, String> {
    let value = |s: String| {
        HeaderValue::from_str(&s)
            .map_err(|_| format!("service account {namespace}/{name} is not a valid identity"))
    };
    // Impersonate-User only: for a service account the API server adds its groups
    // (system:serviceaccounts, system:serviceaccounts:NS) itself, so the reconciler needs
    // `impersonate` on serviceaccounts and nothing on groups (see deploy/).
    let user = HeaderName::from_static("impersonate-user");
    Ok(vec![(user, value(service_account_user(namespace, name))?)])
}

/// Sets the impersonation headers, then sends through the shared client.
#[derive(Clone)]
struct Impersonating {
    inner: kube::Client,
    headers: Result<Arc<Headers>, String>,
}

impl tower::Service<http::Request<Body>> for Impersonating {
    type Response = http::Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the shared client's business; `send` waits for it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let headers = self.headers.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let headers = headers.map_err(|m| kube::Error::Service(m.into()))?;
            let h = req.headers_mut();
            // Whatever the caller set, the identity is this account's and nobody else's.
            let stale: Vec<HeaderName> = h
                .keys()
                .filter(|k| k.as_str().starts_with("impersonate-"))
                .cloned()
                .collect();
            for k in stale {
                h.remove(&k);
            }
            for (k, v) in headers.iter() {
                h.append(k.clone(), v.clone());
            }
            inner.send(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_only_the_account() {
        let h = impersonation_headers("team-a", "deployer").expect("valid");
        let text: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        assert_eq!(
            text,
            vec![(
                "impersonate-user".to_owned(),
                "system:serviceaccount:team-a:deployer".to_owned()
            ),]
        );
    }

    #[test]
    fn a_config_that_impersonates_is_refused() {
        let mut config = kube::Config::new("https://127.0.0.1:1".parse().expect("uri"));
        config.auth_info.impersonate = Some("someone".into());
        let err = Clients::new(config).expect_err("refused");
        assert!(err.to_string().contains("impersonates"), "{err}");
    }

    #[test]
    fn a_name_that_is_no_header_value_is_refused() {
        let err = impersonation_headers("team-a", "bad\nname").expect_err("newline");
        assert!(err.contains("team-a/bad"), "{err}");
    }
}
