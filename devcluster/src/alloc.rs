//! Service address allocation, as kube-apiserver's Service REST storage does it after
//! defaulting and after managedFields are computed (so nobody owns what is set here):
//! `ipFamilyPolicy`/`ipFamilies`, cluster IPs from 10.96.0.0/12, node ports and health-check
//! node ports from 30000-32767, and on update the carry-over of allocated values a client
//! left out and the clearing of fields the new type no longer uses.
//!
//! The cluster is single-stack IPv4. Nothing is kept between requests: what is in use is
//! read from the stored Services (under the store lock), so deleting a Service frees its
//! addresses.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use crate::lifecycle::string_list;
use crate::status::{ApiError, FieldError};

pub const SERVICE_CIDR: &str = "10.96.0.0/12";
const NET: u32 = 0x0A60_0000;
const NET_BITS: u32 = 20;
/// Addresses below this offset are left to explicit requests (kube-dns's 10.96.0.10), like
/// the allocator's reserved lower band; offset 1 is the `kubernetes` Service's.
const STATIC_BAND: u32 = 256;
const PORT_MIN: i64 = 30000;
const PORT_MAX: i64 = 32767;
const PORT_STATIC_BAND: i64 = 128;

/// Cluster IPs and node ports held by the other Services.
#[derive(Debug, Default)]
pub struct Used {
    ips: HashSet<u32>,
    ports: HashSet<i64>,
}

impl Used {
    pub fn from_services<'a>(services: impl Iterator<Item = &'a Value>) -> Used {
        let mut used = Used::default();
        for svc in services {
            for ip in cluster_ips(svc) {
                if let Ok(a) = ip.parse::<Ipv4Addr>() {
                    used.ips.insert(u32::from(a));
                }
            }
            used.ports.extend(node_ports(svc));
        }
        used
    }
}

fn spec(svc: &Value) -> Option<&Map<String, Value>> {
    svc.get("spec").and_then(Value::as_object)
}

fn spec_str<'a>(svc: &'a Value, field: &str) -> &'a str {
    spec(svc)
        .and_then(|s| s.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn svc_type(svc: &Value) -> &str {
    match spec_str(svc, "type") {
        "" => "ClusterIP",
        t => t,
    }
}

fn needs_cluster_ip(svc: &Value) -> bool {
    svc_type(svc) != "ExternalName"
}

fn needs_node_port(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
}

fn needs_health_check(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer" && spec_str(svc, "externalTrafficPolicy") == "Local"
}

fn externally_accessible(svc: &Value) -> bool {
    needs_node_port(svc)
        || (svc_type(svc) == "ClusterIP"
            && spec(svc)
                .and_then(|s| s.get("externalIPs"))
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()))
}

fn cluster_ips(svc: &Value) -> Vec<String> {
    let list = string_list(spec(svc).and_then(|s| s.get("clusterIPs")));
    if list.is_empty() {
        let one = spec_str(svc, "clusterIP");
        if !one.is_empty() {
            return vec![one.to_string()];
        }
    }
    list
}

fn node_ports(svc: &Value) -> Vec<i64> {
    let mut out: Vec<i64> = spec(svc)
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
        .filter(|n| *n != 0)
        .collect();
    if let Some(h) = spec(svc)
        .and_then(|s| s.get("healthCheckNodePort"))
        .and_then(Value::as_i64)
        .filter(|n| *n != 0)
    {
        out.push(h);
    }
    out
}

fn is_headless(svc: &Value) -> bool {
    cluster_ips(svc).first().is_some_and(|ip| ip == "None")
}

fn has_selector(svc: &Value) -> bool {
    spec(svc)
        .and_then(|s| s.get("selector"))
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
}

/// Go's `%#v` of a `[]string`, as field errors show `spec.clusterIPs`.
fn go_strings(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", items.join(", "))
}

fn invalid(svc: &Value, errs: Vec<FieldError>) -> ApiError {
    let name = svc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    ApiError::invalid("", "Service", name, errs)
}

/// Fills the allocated fields of a Service being created (`old` None) or updated. `used`
/// holds the other Services' addresses.
pub fn prepare_service(old: Option<&Value>, svc: &mut Value, used: &Used) -> Result<(), ApiError> {
    if let Some(old) = old {
        drop_type_dependent_fields(old, svc);
        patch_allocated_values(old, svc);
    }
    normalize_cluster_ips(svc);
    init_ip_families(old, svc)?;
    if let Some(old) = old {
        check_cluster_ips_unchanged(old, svc)?;
    }
    let fresh = old.is_none_or(|o| !needs_cluster_ip(o));
    if fresh {
        allocate_cluster_ip(svc, used)?;
    }
    allocate_node_ports(old, svc, used)
}

fn spec_mut(svc: &mut Value) -> Option<&mut Map<String, Value>> {
    svc.get_mut("spec").and_then(Value::as_object_mut)
}

/// A type change clears what the old type had allocated or defaulted, unless the client
/// changed it (kube-apiserver's `dropTypeDependentFields`).
fn drop_type_dependent_fields(old: &Value, svc: &mut Value) {
    let same =
        |f: &str, new: &Value| spec(old).and_then(|s| s.get(f)) == spec(new).and_then(|s| s.get(f));
    let mut clear: Vec<&str> = Vec::new();
    if needs_cluster_ip(old) && !needs_cluster_ip(svc) {
        if same("clusterIP", svc) && same("clusterIPs", svc) {
            clear.extend(["clusterIP", "clusterIPs"]);
        }
        for f in ["ipFamilies", "ipFamilyPolicy"] {
            if same(f, svc) {
                clear.push(f);
            }
        }
    }
    let clear_node_ports = needs_node_port(old)
        && !needs_node_port(svc)
        && node_ports_of_ports(old) == node_ports_of_ports(svc);
    if needs_health_check(old) && !needs_health_check(svc) && same("healthCheckNodePort", svc) {
        clear.push("healthCheckNodePort");
    }
    if svc_type(old) == "LoadBalancer"
        && svc_type(svc) != "LoadBalancer"
        && same("allocateLoadBalancerNodePorts", svc)
    {
        clear.push("allocateLoadBalancerNodePorts");
    }
    if externally_accessible(old)
        && !externally_accessible(svc)
        && same("externalTrafficPolicy", svc)
    {
        clear.push("externalTrafficPolicy");
    }
    let Some(s) = spec_mut(svc) else {
        return;
    };
    for f in clear {
        s.shift_remove(f);
    }
    if clear_node_ports && let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            p.shift_remove("nodePort");
        }
    }
}

fn node_ports_of_ports(svc: &Value) -> Vec<Option<i64>> {
    spec(svc)
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| p.get("nodePort").and_then(Value::as_i64))
        .collect()
}

/// A client that leaves out allocated values (a `kubectl replace` of its manifest) keeps
/// them (kube-apiserver's `patchAllocatedValues`).
fn patch_allocated_values(old: &Value, svc: &mut Value) {
    let both_ip = needs_cluster_ip(old) && needs_cluster_ip(svc);
    let both_ports = needs_node_port(old) && needs_node_port(svc);
    let both_hc = needs_health_check(old) && needs_health_check(svc);
    let old_spec = spec(old).cloned().unwrap_or_default();
    let Some(s) = spec_mut(svc) else {
        return;
    };
    if both_ip {
        for f in ["clusterIP", "clusterIPs"] {
            let missing = match s.get(f) {
                None | Some(Value::Null) => true,
                Some(Value::String(v)) => v.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if missing && let Some(v) = old_spec.get(f) {
                s.insert(f.into(), v.clone());
            }
        }
    }
    if both_ports {
        let old_ports: Vec<&Value> = old_spec
            .get("ports")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let new_ports = s.get_mut("ports").and_then(Value::as_array_mut);
        if let Some(new_ports) = new_ports {
            let port_num = |p: &Value| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
            let in_use: HashSet<i64> = new_ports.iter().map(port_num).collect();
            for p in new_ports.iter_mut() {
                if port_num(p) != 0 {
                    continue;
                }
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                let prior = old_ports
                    .iter()
                    .find(|o| o.get("name").and_then(Value::as_str).unwrap_or("") == name)
                    .map(|o| port_num(o))
                    .unwrap_or(0);
                if prior != 0
                    && !in_use.contains(&prior)
                    && let Some(p) = p.as_object_mut()
                {
                    p.insert("nodePort".into(), json!(prior));
                }
            }
        }
    }
    if both_hc
        && s.get("healthCheckNodePort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
        && let Some(v) = old_spec.get("healthCheckNodePort")
    {
        s.insert("healthCheckNodePort".into(), v.clone());
    }
}

/// `clusterIP` and `clusterIPs[0]` are one value written two ways.
fn normalize_cluster_ips(svc: &mut Value) {
    if !needs_cluster_ip(svc) {
        return;
    }
    let ips = cluster_ips(svc);
    let Some(s) = spec_mut(svc) else {
        return;
    };
    if let Some(first) = ips.first() {
        s.insert("clusterIP".into(), json!(first));
        s.insert("clusterIPs".into(), json!(ips));
    }
}

/// `ipFamilyPolicy` and `ipFamilies` on a single-stack IPv4 cluster.
fn init_ip_families(old: Option<&Value>, svc: &mut Value) -> Result<(), ApiError> {
    if !needs_cluster_ip(svc) {
        return Ok(());
    }
    let headless_selectorless = is_headless(svc) && !has_selector(svc);
    let inherited = old
        .and_then(spec)
        .and_then(|s| s.get("ipFamilyPolicy"))
        .cloned();
    let ips = cluster_ips(svc);
    let mut errs = Vec::new();
    let Some(s) = spec_mut(svc) else {
        return Ok(());
    };
    if s.get("ipFamilyPolicy").is_none_or(Value::is_null) {
        let policy = match inherited {
            Some(p) => p,
            None if headless_selectorless => json!("RequireDualStack"),
            None => json!("SingleStack"),
        };
        s.insert("ipFamilyPolicy".into(), policy);
    }
    let policy = s
        .get("ipFamilyPolicy")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut families = string_list(s.get("ipFamilies"));
    for (i, ip) in ips.iter().enumerate() {
        if ip == "None" {
            break;
        }
        if i >= families.len() {
            if ip.parse::<Ipv4Addr>().is_ok() {
                families.push("IPv4".into());
            } else if ip.parse::<std::net::Ipv6Addr>().is_ok() {
                errs.push(FieldError::invalid_rendered(
                    &format!("spec.clusterIPs[{i}]"),
                    &go_strings(&ips),
                    "IPv6 is not configured on this cluster",
                ));
            } else {
                errs.push(FieldError::invalid(
                    &format!("spec.clusterIPs[{i}]"),
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ));
            }
        }
    }
    if headless_selectorless {
        // Selectorless headless Services may list both families even on a single-stack
        // cluster: their endpoints are whatever the user writes.
        if families.is_empty() {
            families.push("IPv4".into());
        }
        if families.len() < 2 && policy != "SingleStack" {
            let alt = if families[0] == "IPv4" {
                "IPv6"
            } else {
                "IPv4"
            };
            families.push(alt.into());
        }
    } else {
        if policy == "RequireDualStack" {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                &policy,
                "this cluster is not configured for dual-stack services",
            ));
        }
        for (i, f) in families.iter().enumerate() {
            if f != "IPv4" {
                errs.push(FieldError::invalid(
                    &format!("spec.ipFamilies[{i}]"),
                    f,
                    "not configured on this cluster",
                ));
            }
        }
        if families.is_empty() {
            families.push("IPv4".into());
        }
    }
    s.insert("ipFamilies".into(), json!(families));
    if errs.is_empty() {
        Ok(())
    } else {
        Err(invalid(svc, errs))
    }
}

fn check_cluster_ips_unchanged(old: &Value, svc: &Value) -> Result<(), ApiError> {
    if !needs_cluster_ip(old) || !needs_cluster_ip(svc) {
        return Ok(());
    }
    let (before, after) = (cluster_ips(old), cluster_ips(svc));
    match (before.first(), after.first()) {
        (Some(b), Some(a)) if a != b => Err(invalid(
            svc,
            vec![FieldError::invalid_rendered(
                "spec.clusterIPs[0]",
                &go_strings(&after),
                "may not change once set",
            )],
        )),
        _ => Ok(()),
    }
}

fn in_range(ip: u32) -> bool {
    ip >> (32 - NET_BITS) == NET >> (32 - NET_BITS)
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    crate::store::random_bytes(&mut b);
    u32::from_le_bytes(b)
}

/// A free address of the dynamic band, from a random start like kube-apiserver.
fn next_ip(used: &Used) -> Option<u32> {
    let size = 1u32 << (32 - NET_BITS);
    // Neither the network nor the broadcast address.
    let span = size - STATIC_BAND - 1;
    let start = random_u32() % span;
    (0..span)
        .map(|i| NET + STATIC_BAND + (start + i) % span)
        .find(|ip| !used.ips.contains(ip))
}

fn allocate_cluster_ip(svc: &mut Value, used: &Used) -> Result<(), ApiError> {
    if !needs_cluster_ip(svc) || is_headless(svc) {
        return Ok(());
    }
    let ips = cluster_ips(svc);
    let ip = match ips.first() {
        None => {
            let Some(ip) = next_ip(used) else {
                return Err(ApiError::internal(
                    "Internal error occurred: failed to allocate a serviceIP: range is full",
                ));
            };
            Ipv4Addr::from(ip).to_string()
        }
        Some(want) => {
            let fail = |why: String| {
                invalid(
                    svc,
                    vec![FieldError::invalid_rendered(
                        "spec.clusterIPs",
                        &go_strings(&ips),
                        &format!("failed to allocate IP {want}: {why}"),
                    )],
                )
            };
            // Unparseable addresses were reported by `init_ip_families`.
            let Ok(addr) = want.parse::<Ipv4Addr>() else {
                return Ok(());
            };
            let n = u32::from(addr);
            if !in_range(n) {
                return Err(fail(format!(
                    "the provided IP ({want}) is not in the valid range. The range of valid IPs is {SERVICE_CIDR}"
                )));
            }
            if used.ips.contains(&n) {
                return Err(fail("provided IP is already allocated".into()));
            }
            want.clone()
        }
    };
    if let Some(s) = spec_mut(svc) {
        s.insert("clusterIP".into(), json!(ip));
        s.insert("clusterIPs".into(), json!([ip]));
    }
    Ok(())
}

fn next_port(taken: &HashSet<i64>) -> Option<i64> {
    let low = PORT_MIN + PORT_STATIC_BAND;
    let span = PORT_MAX - low + 1;
    let start = i64::from(random_u32()) % span;
    (0..span)
        .map(|i| low + (start + i) % span)
        .find(|p| !taken.contains(p))
}

fn port_error(svc: &Value, field: &str, port: i64) -> Option<ApiError> {
    let why = if !(PORT_MIN..=PORT_MAX).contains(&port) {
        format!(
            "provided port is not in the valid range. The range of valid ports is {PORT_MIN}-{PORT_MAX}"
        )
    } else {
        "provided port is already allocated".to_string()
    };
    Some(invalid(
        svc,
        vec![FieldError::invalid_rendered(field, &port.to_string(), &why)],
    ))
}

/// Node ports for NodePort and LoadBalancer Services (one per port number, shared across
/// protocols), and the health-check node port of a LoadBalancer with the Local policy.
fn allocate_node_ports(old: Option<&Value>, svc: &mut Value, used: &Used) -> Result<(), ApiError> {
    let mine: HashSet<i64> = old
        .map(node_ports)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut taken: HashSet<i64> = used.ports.iter().copied().collect();
    let full = || {
        ApiError::internal("Internal error occurred: failed to allocate a nodePort: range is full")
    };
    if needs_node_port(svc) {
        let allocate_new = svc_type(svc) == "NodePort"
            || spec(svc)
                .and_then(|s| s.get("allocateLoadBalancerNodePorts"))
                .and_then(Value::as_bool)
                .unwrap_or(true);
        let ports: Vec<Value> = spec(svc)
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut by_port: Vec<(i64, i64)> = Vec::new();
        let mut chosen: Vec<Option<i64>> = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let number = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let asked = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
            if asked == 0 && !allocate_new {
                chosen.push(None);
                continue;
            }
            let shared = by_port
                .iter()
                .find(|(n, _)| *n == number)
                .map(|(_, np)| *np);
            let np = match (asked, shared) {
                (0, Some(np)) => np,
                (0, None) => {
                    let np = next_port(&taken).ok_or_else(full)?;
                    taken.insert(np);
                    np
                }
                (asked, Some(np)) if asked == np => np,
                (asked, _) => {
                    let field = format!("spec.ports[{i}].nodePort");
                    let free = (PORT_MIN..=PORT_MAX).contains(&asked) && !taken.contains(&asked);
                    if !free && !mine.contains(&asked) {
                        return Err(port_error(svc, &field, asked).unwrap_or_else(full));
                    }
                    taken.insert(asked);
                    asked
                }
            };
            if !by_port.iter().any(|(n, _)| *n == number) {
                by_port.push((number, np));
            }
            chosen.push(Some(np));
        }
        if let Some(list) = spec_mut(svc)
            .and_then(|s| s.get_mut("ports"))
            .and_then(Value::as_array_mut)
        {
            for (p, np) in list.iter_mut().zip(chosen) {
                if let (Some(p), Some(np)) = (p.as_object_mut(), np) {
                    p.insert("nodePort".into(), json!(np));
                }
            }
        }
    }
    let needed_before = old.is_some_and(needs_health_check);
    if needs_health_check(svc) && !needed_before {
        let asked = spec(svc)
            .and_then(|s| s.get("healthCheckNodePort"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let hc = if asked == 0 {
            next_port(&taken).ok_or_else(full)?
        } else if (PORT_MIN..=PORT_MAX).contains(&asked) && !taken.contains(&asked) {
            asked
        } else {
            return Err(ApiError::internal(format!(
                "Internal error occurred: failed to allocate requested HealthCheck NodePort {asked}: provided port is already allocated"
            )));
        };
        if let Some(s) = spec_mut(svc) {
            s.insert("healthCheckNodePort".into(), json!(hc));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata":{"name":"s","namespace":"default"},"spec":spec})
    }

    fn ip_of(v: &Value) -> String {
        v["spec"]["clusterIP"].as_str().unwrap_or("").to_string()
    }

    #[test]
    fn cluster_ips_are_unique_and_in_range() {
        let mut stored: Vec<Value> = Vec::new();
        for _ in 0..50 {
            let mut s = svc(json!({"type":"ClusterIP","ports":[{"port":80}]}));
            let used = Used::from_services(stored.iter());
            assert!(prepare_service(None, &mut s, &used).is_ok());
            let ip: Ipv4Addr = ip_of(&s).parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
            assert!(in_range(u32::from(ip)), "{ip}");
            assert_eq!(s["spec"]["clusterIPs"], json!([ip_of(&s)]));
            assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
            assert_eq!(s["spec"]["ipFamilyPolicy"], "SingleStack");
            stored.push(s);
        }
        let ips: HashSet<String> = stored.iter().map(ip_of).collect();
        assert_eq!(ips.len(), stored.len());
    }

    #[test]
    fn requested_ip_is_kept_or_rejected() {
        let mut a = svc(json!({"clusterIP":"10.96.0.10"}));
        assert!(prepare_service(None, &mut a, &Used::default()).is_ok());
        assert_eq!(a["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        let used = Used::from_services(std::iter::once(&a));
        let mut b = svc(json!({"clusterIP":"10.96.0.10"}));
        let err = prepare_service(None, &mut b, &used)
            .err()
            .map(|e| e.to_status());
        let msg = err
            .as_ref()
            .and_then(|s| s["message"].as_str())
            .unwrap_or("");
        assert_eq!(
            msg,
            "Service \"s\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.10\"}: failed to allocate IP 10.96.0.10: provided IP is already allocated"
        );
        let mut c = svc(json!({"clusterIP":"192.168.0.1"}));
        assert!(prepare_service(None, &mut c, &used).is_err());
    }

    #[test]
    fn headless_gets_families_but_no_address() {
        let mut h = svc(json!({"clusterIP":"None","selector":{"app":"a"}}));
        assert!(prepare_service(None, &mut h, &Used::default()).is_ok());
        assert_eq!(h["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(h["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(h["spec"]["ipFamilyPolicy"], "SingleStack");
        let mut bare = svc(json!({"clusterIP":"None"}));
        assert!(prepare_service(None, &mut bare, &Used::default()).is_ok());
        assert_eq!(bare["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
        assert_eq!(bare["spec"]["ipFamilyPolicy"], "RequireDualStack");
        let mut ext = svc(json!({"type":"ExternalName","externalName":"example.com"}));
        assert!(prepare_service(None, &mut ext, &Used::default()).is_ok());
        assert!(ext["spec"].get("clusterIP").is_none());
        assert!(ext["spec"].get("ipFamilies").is_none());
    }

    #[test]
    fn node_ports_are_allocated_shared_and_checked() {
        let mut n = svc(json!({"type":"NodePort","ports":[
            {"port":53,"protocol":"UDP"},{"port":53,"protocol":"TCP"},{"port":80,"protocol":"TCP","nodePort":30080}]}));
        assert!(prepare_service(None, &mut n, &Used::default()).is_ok());
        let p = &n["spec"]["ports"];
        let first = p[0]["nodePort"].as_i64().unwrap_or(0);
        assert!((PORT_MIN + PORT_STATIC_BAND..=PORT_MAX).contains(&first));
        assert_eq!(p[1]["nodePort"], first);
        assert_eq!(p[2]["nodePort"], 30080);
        let used = Used::from_services(std::iter::once(&n));
        let mut m = svc(json!({"type":"NodePort","ports":[{"port":80,"nodePort":30080}]}));
        let err = prepare_service(None, &mut m, &used)
            .err()
            .map(|e| e.to_status());
        assert_eq!(
            err.as_ref().and_then(|s| s["message"].as_str()),
            Some(
                "Service \"s\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
            )
        );
        let mut lb = svc(
            json!({"type":"LoadBalancer","allocateLoadBalancerNodePorts":false,"ports":[{"port":80}]}),
        );
        assert!(prepare_service(None, &mut lb, &used).is_ok());
        assert!(lb["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn updates_keep_allocations_and_type_changes_clear_them() {
        let mut old = svc(
            json!({"type":"NodePort","externalTrafficPolicy":"Cluster","ports":[{"name":"http","port":80}]}),
        );
        assert!(prepare_service(None, &mut old, &Used::default()).is_ok());
        // A replace that leaves out the allocated values keeps them.
        let mut replaced = svc(
            json!({"type":"NodePort","externalTrafficPolicy":"Cluster","ports":[{"name":"http","port":80}]}),
        );
        assert!(prepare_service(Some(&old), &mut replaced, &Used::default()).is_ok());
        assert_eq!(replaced["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        assert_eq!(
            replaced["spec"]["ports"][0]["nodePort"],
            old["spec"]["ports"][0]["nodePort"]
        );
        // Back to ClusterIP: node ports and the external policy go, the address stays.
        let mut back = old.clone();
        back["spec"]["type"] = json!("ClusterIP");
        assert!(prepare_service(Some(&old), &mut back, &Used::default()).is_ok());
        assert!(back["spec"]["ports"][0].get("nodePort").is_none());
        assert!(back["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(back["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        // The address is immutable.
        let mut moved = old.clone();
        moved["spec"]["clusterIP"] = json!("10.96.0.99");
        moved["spec"]["clusterIPs"] = json!(["10.96.0.99"]);
        assert!(prepare_service(Some(&old), &mut moved, &Used::default()).is_err());
        // To ExternalName: the address fields go.
        let mut ext = old.clone();
        ext["spec"]["type"] = json!("ExternalName");
        ext["spec"]["externalName"] = json!("example.com");
        assert!(prepare_service(Some(&old), &mut ext, &Used::default()).is_ok());
        assert!(ext["spec"].get("clusterIP").is_none());
        assert!(ext["spec"].get("ipFamilyPolicy").is_none());
    }
}
