//! Decoding of the Kubernetes protobuf envelope for the kinds kubectl's typed clients send as
//! protobuf (`kubectl create namespace|configmap|secret|role|deployment|service|job|cronjob|
//! ingress`, `run`, `expose`, `auth can-i`, `auth whoami`, `create token`). Responses stay
//! JSON, which client-go accepts.
//!
//! The workload kinds are decoded through per-message field tables (`Spec`) that mirror the
//! Go types: gogo-protobuf writes every non-pointer field, zero values included, so each
//! table says which zero values the JSON encoder would have left out.

use serde_json::{Map, Value, json};

use crate::status::ApiError;

const MAGIC: &[u8] = b"k8s\0";

fn bad(what: &str) -> ApiError {
    ApiError::bad_request(format!("unable to decode protobuf body: {what}"))
}

/// One decoded field: number and its raw payload.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed32/fixed64: no kind decoded here has one, so its value is not kept.
    Fixed,
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        out |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(bad("varint too long"))
}

fn fields(b: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ApiError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let tag = varint(b, &mut pos)?;
        let (num, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => {
                let v = varint(b, &mut pos)?;
                out.push((num, Field::Varint(v)));
            }
            2 => {
                let len = usize::try_from(varint(b, &mut pos)?).map_err(|_| bad("length"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= b.len())
                    .ok_or_else(|| bad("truncated field"))?;
                out.push((num, Field::Bytes(&b[pos..end])));
                pos = end;
            }
            1 | 5 => {
                pos = pos
                    .checked_add(if wire == 1 { 8 } else { 4 })
                    .filter(|e| *e <= b.len())
                    .ok_or_else(|| bad("truncated field"))?;
                out.push((num, Field::Fixed));
            }
            _ => return Err(bad("unsupported wire type")),
        }
    }
    Ok(out)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn string_map(entries: &[&[u8]], bytes_values: bool) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for e in entries {
        let mut k = String::new();
        let mut v = Value::String(String::new());
        for (n, f) in fields(e)? {
            if let Field::Bytes(x) = f {
                match n {
                    1 => k = text(x),
                    2 if bytes_values => {
                        use base64::Engine;
                        v = json!(base64::engine::general_purpose::STANDARD.encode(x));
                    }
                    2 => v = json!(text(x)),
                    _ => {}
                }
            }
        }
        m.insert(k, v);
    }
    Ok(Value::Object(m))
}

fn repeated<'a>(fs: &'a [(u64, Field<'a>)], num: u64) -> Vec<&'a [u8]> {
    fs.iter()
        .filter_map(|(n, f)| match f {
            Field::Bytes(b) if *n == num => Some(*b),
            _ => None,
        })
        .collect()
}

fn single<'a>(fs: &'a [(u64, Field<'a>)], num: u64) -> Option<&'a [u8]> {
    repeated(fs, num).into_iter().last()
}

fn object_meta(b: &[u8]) -> Result<Value, ApiError> {
    message(b, OBJECT_META)
}

fn strings(fs: &[(u64, Field<'_>)], num: u64) -> Vec<Value> {
    repeated(fs, num)
        .into_iter()
        .map(|x| json!(text(x)))
        .collect()
}

/// rbac.authorization.k8s.io/v1 PolicyRule.
fn policy_rule(b: &[u8]) -> Result<Value, ApiError> {
    let f = fields(b)?;
    let mut m = Map::new();
    for (n, k) in [
        (1, "verbs"),
        (2, "apiGroups"),
        (3, "resources"),
        (4, "resourceNames"),
        (5, "nonResourceURLs"),
    ] {
        let v = strings(&f, n);
        if !v.is_empty() || n == 1 {
            m.insert(k.into(), Value::Array(v));
        }
    }
    Ok(Value::Object(m))
}

/// meta/v1 LabelSelector.
fn label_selector(b: &[u8]) -> Result<Value, ApiError> {
    message(b, LABEL_SELECTOR)
}

/// How one protobuf field becomes JSON, following the Go field's type and json tag.
#[derive(Clone, Copy)]
enum Ty {
    /// A non-pointer `string` with `omitempty`: "" is dropped, as the JSON encoder drops it.
    Str,
    /// A `*string`, or a `string` without `omitempty`: present means carried, even "".
    StrKeep,
    /// Non-pointer integers and bools with `omitempty`: zero is dropped.
    I32,
    I64,
    Bool,
    /// Pointers, or fields without `omitempty`: an explicit zero is carried.
    I32Keep,
    I64Keep,
    BoolKeep,
    Strs,
    /// `repeated int64`, packed or not.
    I64s,
    StrMap,
    /// `map<string, Quantity>` (a ResourceList).
    QtyMap,
    /// resource.Quantity: its canonical string; the zero Quantity prints as "0".
    Qty,
    IntOrStr,
    /// meta/v1 Time with `omitzero`: the zero time (year 1) is dropped.
    Time,
    /// A struct: present means carried, so a non-pointer struct gives `{}` as in JSON.
    Msg(&'static [Spec]),
    Msgs(&'static [Spec]),
    /// A Go embedded struct (`json:",inline"`): its fields land in the parent object.
    Inline(&'static [Spec]),
}

type Spec = (u64, &'static str, Ty);

/// The last varint of field `num`; a length-delimited payload there is malformed.
fn last_varint(fs: &[(u64, Field<'_>)], num: u64) -> Result<Option<u64>, ApiError> {
    let mut out = None;
    for (n, f) in fs {
        if *n == num {
            match f {
                Field::Varint(v) => out = Some(*v),
                _ => return Err(bad("wrong wire type")),
            }
        }
    }
    Ok(out)
}

/// All payloads of field `num`; a varint there is malformed.
fn payloads<'a>(fs: &'a [(u64, Field<'a>)], num: u64) -> Result<Vec<&'a [u8]>, ApiError> {
    let mut out = Vec::new();
    for (n, f) in fs {
        if *n == num {
            match f {
                Field::Bytes(b) => out.push(*b),
                _ => return Err(bad("wrong wire type")),
            }
        }
    }
    Ok(out)
}

/// Protobuf merges repeated occurrences of a singular message field, which is the same as
/// decoding their concatenation.
fn merged(parts: &[&[u8]]) -> Option<Vec<u8>> {
    (!parts.is_empty()).then(|| parts.concat())
}

fn quantity(b: &[u8]) -> Result<Value, ApiError> {
    let f = fields(b)?;
    let s = payloads(&f, 1)?.last().map(|x| text(x)).unwrap_or_default();
    Ok(json!(if s.is_empty() { "0".to_string() } else { s }))
}

fn int_or_string(b: &[u8]) -> Result<Value, ApiError> {
    let f = fields(b)?;
    Ok(if last_varint(&f, 1)? == Some(1) {
        json!(payloads(&f, 3)?.last().map(|x| text(x)).unwrap_or_default())
    } else {
        json!(last_varint(&f, 2)?.unwrap_or(0) as i32)
    })
}

/// Seconds of `0001-01-01T00:00:00Z`, Go's zero time.
const ZERO_TIME_SECONDS: i64 = -62_135_596_800;

fn time(b: &[u8]) -> Result<Option<Value>, ApiError> {
    // apimachinery writes the zero time as an empty message and reads an empty message back
    // as the zero time; nanos are ignored both ways because JSON carries whole seconds.
    if b.is_empty() {
        return Ok(None);
    }
    let f = fields(b)?;
    let secs = last_varint(&f, 1)?.unwrap_or(0) as i64;
    last_varint(&f, 2)?;
    if secs == ZERO_TIME_SECONDS {
        return Ok(None);
    }
    Ok(Some(json!(crate::auth::rfc3339(secs))))
}

fn value_map(
    entries: &[&[u8]],
    value: impl Fn(&[u8]) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for e in entries {
        let f = fields(e)?;
        let k = payloads(&f, 1)?.last().map(|x| text(x)).unwrap_or_default();
        m.insert(k, value(payloads(&f, 2)?.last().copied().unwrap_or(&[]))?);
    }
    Ok(Value::Object(m))
}

/// Decode one message by its table into `out`; fields not in the table are skipped.
fn decode_into(b: &[u8], spec: &[Spec], out: &mut Map<String, Value>) -> Result<(), ApiError> {
    let fs = fields(b)?;
    for &(num, key, ty) in spec {
        let v = match ty {
            Ty::Str | Ty::StrKeep => match payloads(&fs, num)?.last() {
                Some(x) if !x.is_empty() || matches!(ty, Ty::StrKeep) => Some(json!(text(x))),
                _ => None,
            },
            Ty::I32 | Ty::I32Keep => last_varint(&fs, num)?
                .map(|v| v as i32)
                .filter(|v| *v != 0 || matches!(ty, Ty::I32Keep))
                .map(|v| json!(v)),
            Ty::I64 | Ty::I64Keep => last_varint(&fs, num)?
                .map(|v| v as i64)
                .filter(|v| *v != 0 || matches!(ty, Ty::I64Keep))
                .map(|v| json!(v)),
            Ty::Bool | Ty::BoolKeep => last_varint(&fs, num)?
                .map(|v| v != 0)
                .filter(|v| *v || matches!(ty, Ty::BoolKeep))
                .map(|v| json!(v)),
            Ty::Strs => {
                let v = payloads(&fs, num)?;
                (!v.is_empty()).then(|| v.into_iter().map(|x| json!(text(x))).collect())
            }
            Ty::I64s => {
                let mut v = Vec::new();
                for (n, f) in &fs {
                    match f {
                        Field::Varint(x) if *n == num => v.push(json!(*x as i64)),
                        Field::Bytes(packed) if *n == num => {
                            let mut pos = 0;
                            while pos < packed.len() {
                                v.push(json!(varint(packed, &mut pos)? as i64));
                            }
                        }
                        Field::Fixed if *n == num => return Err(bad("wrong wire type")),
                        _ => {}
                    }
                }
                (!v.is_empty()).then_some(Value::Array(v))
            }
            Ty::StrMap => {
                let e = payloads(&fs, num)?;
                (!e.is_empty()).then(|| string_map(&e, false)).transpose()?
            }
            Ty::QtyMap => {
                let e = payloads(&fs, num)?;
                (!e.is_empty())
                    .then(|| value_map(&e, quantity))
                    .transpose()?
            }
            Ty::Qty => merged(&payloads(&fs, num)?)
                .map(|b| quantity(&b))
                .transpose()?,
            Ty::IntOrStr => merged(&payloads(&fs, num)?)
                .map(|b| int_or_string(&b))
                .transpose()?,
            Ty::Time => match merged(&payloads(&fs, num)?) {
                Some(b) => time(&b)?,
                None => None,
            },
            Ty::Msg(inner) => merged(&payloads(&fs, num)?)
                .map(|b| message(&b, inner))
                .transpose()?,
            Ty::Msgs(inner) => {
                let v = payloads(&fs, num)?
                    .into_iter()
                    .map(|b| message(b, inner))
                    .collect::<Result<Vec<_>, _>>()?;
                (!v.is_empty()).then_some(Value::Array(v))
            }
            Ty::Inline(inner) => {
                if let Some(b) = merged(&payloads(&fs, num)?) {
                    decode_into(&b, inner, out)?;
                }
                None
            }
        };
        if let Some(v) = v {
            out.insert(key.into(), v);
        }
    }
    Ok(())
}

fn message(b: &[u8], spec: &[Spec]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    decode_into(b, spec, &mut m)?;
    Ok(Value::Object(m))
}

// Field tables, numbered as in the generated.proto files of k8s.io/apimachinery and
// k8s.io/api (meta/v1, core/v1, apps/v1, batch/v1, networking/v1). Read-only fields a client
// cannot set on create (selfLink, managedFields, deletionTimestamp) are left out.

const OWNER_REFERENCE: &[Spec] = &[
    (5, "apiVersion", Ty::StrKeep),
    (1, "kind", Ty::StrKeep),
    (3, "name", Ty::StrKeep),
    (4, "uid", Ty::StrKeep),
    (6, "controller", Ty::BoolKeep),
    (7, "blockOwnerDeletion", Ty::BoolKeep),
];

const OBJECT_META: &[Spec] = &[
    (1, "name", Ty::Str),
    (2, "generateName", Ty::Str),
    (3, "namespace", Ty::Str),
    (5, "uid", Ty::Str),
    (6, "resourceVersion", Ty::Str),
    (7, "generation", Ty::I64),
    (8, "creationTimestamp", Ty::Time),
    (10, "deletionGracePeriodSeconds", Ty::I64Keep),
    (11, "labels", Ty::StrMap),
    (12, "annotations", Ty::StrMap),
    (13, "ownerReferences", Ty::Msgs(OWNER_REFERENCE)),
    (14, "finalizers", Ty::Strs),
];

/// LabelSelectorRequirement and NodeSelectorRequirement share this shape.
const SELECTOR_REQUIREMENT: &[Spec] = &[
    (1, "key", Ty::StrKeep),
    (2, "operator", Ty::StrKeep),
    (3, "values", Ty::Strs),
];

const LABEL_SELECTOR: &[Spec] = &[
    (1, "matchLabels", Ty::StrMap),
    (2, "matchExpressions", Ty::Msgs(SELECTOR_REQUIREMENT)),
];

const LOCAL_OBJECT_REFERENCE: &[Spec] = &[(1, "name", Ty::Str)];

/// ConfigMapKeySelector and SecretKeySelector.
const KEY_SELECTOR: &[Spec] = &[
    (1, "", Ty::Inline(LOCAL_OBJECT_REFERENCE)),
    (2, "key", Ty::StrKeep),
    (3, "optional", Ty::BoolKeep),
];

const OBJECT_FIELD_SELECTOR: &[Spec] = &[(1, "apiVersion", Ty::Str), (2, "fieldPath", Ty::StrKeep)];

const RESOURCE_FIELD_SELECTOR: &[Spec] = &[
    (1, "containerName", Ty::Str),
    (2, "resource", Ty::StrKeep),
    (3, "divisor", Ty::Qty),
];

const ENV_VAR_SOURCE: &[Spec] = &[
    (1, "fieldRef", Ty::Msg(OBJECT_FIELD_SELECTOR)),
    (2, "resourceFieldRef", Ty::Msg(RESOURCE_FIELD_SELECTOR)),
    (3, "configMapKeyRef", Ty::Msg(KEY_SELECTOR)),
    (4, "secretKeyRef", Ty::Msg(KEY_SELECTOR)),
];

const ENV_VAR: &[Spec] = &[
    (1, "name", Ty::StrKeep),
    (2, "value", Ty::Str),
    (3, "valueFrom", Ty::Msg(ENV_VAR_SOURCE)),
];

/// ConfigMapEnvSource and SecretEnvSource.
const ENV_SOURCE: &[Spec] = &[
    (1, "", Ty::Inline(LOCAL_OBJECT_REFERENCE)),
    (2, "optional", Ty::BoolKeep),
];

const ENV_FROM_SOURCE: &[Spec] = &[
    (1, "prefix", Ty::Str),
    (2, "configMapRef", Ty::Msg(ENV_SOURCE)),
    (3, "secretRef", Ty::Msg(ENV_SOURCE)),
];

const CONTAINER_PORT: &[Spec] = &[
    (1, "name", Ty::Str),
    (2, "hostPort", Ty::I32),
    (3, "containerPort", Ty::I32Keep),
    (4, "protocol", Ty::Str),
    (5, "hostIP", Ty::Str),
];

const RESOURCE_REQUIREMENTS: &[Spec] = &[
    (1, "limits", Ty::QtyMap),
    (2, "requests", Ty::QtyMap),
    (
        3,
        "claims",
        Ty::Msgs(&[(1, "name", Ty::StrKeep), (2, "request", Ty::Str)]),
    ),
];

const VOLUME_MOUNT: &[Spec] = &[
    (1, "name", Ty::StrKeep),
    (2, "readOnly", Ty::Bool),
    (7, "recursiveReadOnly", Ty::StrKeep),
    (3, "mountPath", Ty::StrKeep),
    (4, "subPath", Ty::Str),
    (5, "mountPropagation", Ty::StrKeep),
    (6, "subPathExpr", Ty::Str),
    (8, "bindMountOptions", Ty::Strs),
];

const EXEC_ACTION: &[Spec] = &[(1, "command", Ty::Strs)];

const HTTP_GET_ACTION: &[Spec] = &[
    (1, "path", Ty::Str),
    (2, "port", Ty::IntOrStr),
    (3, "host", Ty::Str),
    (4, "scheme", Ty::Str),
    (
        5,
        "httpHeaders",
        Ty::Msgs(&[(1, "name", Ty::StrKeep), (2, "value", Ty::StrKeep)]),
    ),
    (6, "protocol", Ty::StrKeep),
];

const TCP_SOCKET_ACTION: &[Spec] = &[(1, "port", Ty::IntOrStr), (2, "host", Ty::Str)];

const PROBE_HANDLER: &[Spec] = &[
    (1, "exec", Ty::Msg(EXEC_ACTION)),
    (2, "httpGet", Ty::Msg(HTTP_GET_ACTION)),
    (3, "tcpSocket", Ty::Msg(TCP_SOCKET_ACTION)),
    (
        4,
        "grpc",
        Ty::Msg(&[(1, "port", Ty::I32Keep), (2, "service", Ty::StrKeep)]),
    ),
];

const PROBE: &[Spec] = &[
    (1, "", Ty::Inline(PROBE_HANDLER)),
    (2, "initialDelaySeconds", Ty::I32),
    (3, "timeoutSeconds", Ty::I32),
    (4, "periodSeconds", Ty::I32),
    (5, "successThreshold", Ty::I32),
    (6, "failureThreshold", Ty::I32),
    (7, "terminationGracePeriodSeconds", Ty::I64Keep),
];

const LIFECYCLE_HANDLER: &[Spec] = &[
    (1, "exec", Ty::Msg(EXEC_ACTION)),
    (2, "httpGet", Ty::Msg(HTTP_GET_ACTION)),
    (3, "tcpSocket", Ty::Msg(TCP_SOCKET_ACTION)),
    (4, "sleep", Ty::Msg(&[(1, "seconds", Ty::I64Keep)])),
];

const LIFECYCLE: &[Spec] = &[
    (1, "postStart", Ty::Msg(LIFECYCLE_HANDLER)),
    (2, "preStop", Ty::Msg(LIFECYCLE_HANDLER)),
    (3, "stopSignal", Ty::StrKeep),
];

const SE_LINUX_OPTIONS: &[Spec] = &[
    (1, "user", Ty::Str),
    (2, "role", Ty::Str),
    (3, "type", Ty::Str),
    (4, "level", Ty::Str),
];

/// SeccompProfile and AppArmorProfile.
const PROFILE: &[Spec] = &[
    (1, "type", Ty::StrKeep),
    (2, "localhostProfile", Ty::StrKeep),
];

const SECURITY_CONTEXT: &[Spec] = &[
    (
        1,
        "capabilities",
        Ty::Msg(&[(1, "add", Ty::Strs), (2, "drop", Ty::Strs)]),
    ),
    (2, "privileged", Ty::BoolKeep),
    (3, "seLinuxOptions", Ty::Msg(SE_LINUX_OPTIONS)),
    (4, "runAsUser", Ty::I64Keep),
    (8, "runAsGroup", Ty::I64Keep),
    (5, "runAsNonRoot", Ty::BoolKeep),
    (6, "readOnlyRootFilesystem", Ty::BoolKeep),
    (7, "allowPrivilegeEscalation", Ty::BoolKeep),
    (9, "procMount", Ty::StrKeep),
    (11, "seccompProfile", Ty::Msg(PROFILE)),
    (12, "appArmorProfile", Ty::Msg(PROFILE)),
];

const CONTAINER: &[Spec] = &[
    (1, "name", Ty::StrKeep),
    (2, "image", Ty::Str),
    (3, "command", Ty::Strs),
    (4, "args", Ty::Strs),
    (5, "workingDir", Ty::Str),
    (6, "ports", Ty::Msgs(CONTAINER_PORT)),
    (19, "envFrom", Ty::Msgs(ENV_FROM_SOURCE)),
    (7, "env", Ty::Msgs(ENV_VAR)),
    (8, "resources", Ty::Msg(RESOURCE_REQUIREMENTS)),
    (
        23,
        "resizePolicy",
        Ty::Msgs(&[
            (1, "resourceName", Ty::StrKeep),
            (2, "restartPolicy", Ty::StrKeep),
        ]),
    ),
    (24, "restartPolicy", Ty::StrKeep),
    (9, "volumeMounts", Ty::Msgs(VOLUME_MOUNT)),
    (10, "livenessProbe", Ty::Msg(PROBE)),
    (11, "readinessProbe", Ty::Msg(PROBE)),
    (22, "startupProbe", Ty::Msg(PROBE)),
    (12, "lifecycle", Ty::Msg(LIFECYCLE)),
    (13, "terminationMessagePath", Ty::Str),
    (20, "terminationMessagePolicy", Ty::Str),
    (14, "imagePullPolicy", Ty::Str),
    (15, "securityContext", Ty::Msg(SECURITY_CONTEXT)),
    (16, "stdin", Ty::Bool),
    (17, "stdinOnce", Ty::Bool),
    (18, "tty", Ty::Bool),
];

const KEY_TO_PATH: &[Spec] = &[
    (1, "key", Ty::StrKeep),
    (2, "path", Ty::StrKeep),
    (3, "mode", Ty::I32Keep),
    (4, "user", Ty::I64Keep),
];

const DOWNWARD_API_FILE: &[Spec] = &[
    (1, "path", Ty::StrKeep),
    (2, "fieldRef", Ty::Msg(OBJECT_FIELD_SELECTOR)),
    (3, "resourceFieldRef", Ty::Msg(RESOURCE_FIELD_SELECTOR)),
    (4, "mode", Ty::I32Keep),
    (5, "user", Ty::I64Keep),
];

/// The common volume sources; the cloud and legacy in-tree ones are skipped.
const VOLUME_SOURCE: &[Spec] = &[
    (
        1,
        "hostPath",
        Ty::Msg(&[(1, "path", Ty::StrKeep), (2, "type", Ty::StrKeep)]),
    ),
    (
        2,
        "emptyDir",
        Ty::Msg(&[
            (1, "medium", Ty::Str),
            (2, "sizeLimit", Ty::Qty),
            (3, "mode", Ty::I32Keep),
        ]),
    ),
    (
        6,
        "secret",
        Ty::Msg(&[
            (1, "secretName", Ty::Str),
            (2, "items", Ty::Msgs(KEY_TO_PATH)),
            (3, "defaultMode", Ty::I32Keep),
            (4, "optional", Ty::BoolKeep),
            (5, "defaultUser", Ty::I64Keep),
        ]),
    ),
    (
        10,
        "persistentVolumeClaim",
        Ty::Msg(&[(1, "claimName", Ty::StrKeep), (2, "readOnly", Ty::Bool)]),
    ),
    (
        16,
        "downwardAPI",
        Ty::Msg(&[
            (1, "items", Ty::Msgs(DOWNWARD_API_FILE)),
            (2, "defaultMode", Ty::I32Keep),
            (3, "defaultUser", Ty::I64Keep),
        ]),
    ),
    (
        19,
        "configMap",
        Ty::Msg(&[
            (1, "", Ty::Inline(LOCAL_OBJECT_REFERENCE)),
            (2, "items", Ty::Msgs(KEY_TO_PATH)),
            (3, "defaultMode", Ty::I32Keep),
            (4, "optional", Ty::BoolKeep),
            (5, "defaultUser", Ty::I64Keep),
        ]),
    ),
];

const VOLUME: &[Spec] = &[(1, "name", Ty::StrKeep), (2, "", Ty::Inline(VOLUME_SOURCE))];

const POD_SECURITY_CONTEXT: &[Spec] = &[
    (1, "seLinuxOptions", Ty::Msg(SE_LINUX_OPTIONS)),
    (2, "runAsUser", Ty::I64Keep),
    (6, "runAsGroup", Ty::I64Keep),
    (3, "runAsNonRoot", Ty::BoolKeep),
    (4, "supplementalGroups", Ty::I64s),
    (12, "supplementalGroupsPolicy", Ty::StrKeep),
    (5, "fsGroup", Ty::I64Keep),
    (
        7,
        "sysctls",
        Ty::Msgs(&[(1, "name", Ty::StrKeep), (2, "value", Ty::StrKeep)]),
    ),
    (9, "fsGroupChangePolicy", Ty::StrKeep),
    (10, "seccompProfile", Ty::Msg(PROFILE)),
    (11, "appArmorProfile", Ty::Msg(PROFILE)),
    (13, "seLinuxChangePolicy", Ty::StrKeep),
];

const NODE_SELECTOR_TERM: &[Spec] = &[
    (1, "matchExpressions", Ty::Msgs(SELECTOR_REQUIREMENT)),
    (2, "matchFields", Ty::Msgs(SELECTOR_REQUIREMENT)),
];

const POD_AFFINITY_TERM: &[Spec] = &[
    (1, "labelSelector", Ty::Msg(LABEL_SELECTOR)),
    (2, "namespaces", Ty::Strs),
    (3, "topologyKey", Ty::StrKeep),
    (4, "namespaceSelector", Ty::Msg(LABEL_SELECTOR)),
    (5, "matchLabelKeys", Ty::Strs),
    (6, "mismatchLabelKeys", Ty::Strs),
];

/// PodAffinity and PodAntiAffinity.
const POD_AFFINITY: &[Spec] = &[
    (
        1,
        "requiredDuringSchedulingIgnoredDuringExecution",
        Ty::Msgs(POD_AFFINITY_TERM),
    ),
    (
        2,
        "preferredDuringSchedulingIgnoredDuringExecution",
        Ty::Msgs(&[
            (1, "weight", Ty::I32Keep),
            (2, "podAffinityTerm", Ty::Msg(POD_AFFINITY_TERM)),
        ]),
    ),
];

const AFFINITY: &[Spec] = &[
    (
        1,
        "nodeAffinity",
        Ty::Msg(&[
            (
                1,
                "requiredDuringSchedulingIgnoredDuringExecution",
                Ty::Msg(&[(1, "nodeSelectorTerms", Ty::Msgs(NODE_SELECTOR_TERM))]),
            ),
            (
                2,
                "preferredDuringSchedulingIgnoredDuringExecution",
                Ty::Msgs(&[
                    (1, "weight", Ty::I32Keep),
                    (2, "preference", Ty::Msg(NODE_SELECTOR_TERM)),
                ]),
            ),
        ]),
    ),
    (2, "podAffinity", Ty::Msg(POD_AFFINITY)),
    (3, "podAntiAffinity", Ty::Msg(POD_AFFINITY)),
];

const TOLERATION: &[Spec] = &[
    (1, "key", Ty::Str),
    (2, "operator", Ty::Str),
    (3, "value", Ty::Str),
    (4, "effect", Ty::Str),
    (5, "tolerationSeconds", Ty::I64Keep),
];

const TOPOLOGY_SPREAD_CONSTRAINT: &[Spec] = &[
    (1, "maxSkew", Ty::I32Keep),
    (2, "topologyKey", Ty::StrKeep),
    (3, "whenUnsatisfiable", Ty::StrKeep),
    (4, "labelSelector", Ty::Msg(LABEL_SELECTOR)),
    (5, "minDomains", Ty::I32Keep),
    (6, "nodeAffinityPolicy", Ty::StrKeep),
    (7, "nodeTaintsPolicy", Ty::StrKeep),
    (8, "matchLabelKeys", Ty::Strs),
];

const NAME_ONLY: &[Spec] = &[(1, "name", Ty::StrKeep)];

const POD_SPEC: &[Spec] = &[
    (1, "volumes", Ty::Msgs(VOLUME)),
    (20, "initContainers", Ty::Msgs(CONTAINER)),
    (2, "containers", Ty::Msgs(CONTAINER)),
    (3, "restartPolicy", Ty::Str),
    (4, "terminationGracePeriodSeconds", Ty::I64Keep),
    (5, "activeDeadlineSeconds", Ty::I64Keep),
    (6, "dnsPolicy", Ty::Str),
    (7, "nodeSelector", Ty::StrMap),
    (8, "serviceAccountName", Ty::Str),
    (9, "serviceAccount", Ty::Str),
    (21, "automountServiceAccountToken", Ty::BoolKeep),
    (10, "nodeName", Ty::Str),
    (11, "hostNetwork", Ty::Bool),
    (12, "hostPID", Ty::Bool),
    (13, "hostIPC", Ty::Bool),
    (27, "shareProcessNamespace", Ty::BoolKeep),
    (14, "securityContext", Ty::Msg(POD_SECURITY_CONTEXT)),
    (15, "imagePullSecrets", Ty::Msgs(LOCAL_OBJECT_REFERENCE)),
    (16, "hostname", Ty::Str),
    (17, "subdomain", Ty::Str),
    (18, "affinity", Ty::Msg(AFFINITY)),
    (19, "schedulerName", Ty::Str),
    (22, "tolerations", Ty::Msgs(TOLERATION)),
    (
        23,
        "hostAliases",
        Ty::Msgs(&[(1, "ip", Ty::StrKeep), (2, "hostnames", Ty::Strs)]),
    ),
    (24, "priorityClassName", Ty::Str),
    (25, "priority", Ty::I32Keep),
    (
        26,
        "dnsConfig",
        Ty::Msg(&[
            (1, "nameservers", Ty::Strs),
            (2, "searches", Ty::Strs),
            (
                3,
                "options",
                Ty::Msgs(&[(1, "name", Ty::Str), (2, "value", Ty::StrKeep)]),
            ),
        ]),
    ),
    (
        28,
        "readinessGates",
        Ty::Msgs(&[(1, "conditionType", Ty::StrKeep)]),
    ),
    (29, "runtimeClassName", Ty::StrKeep),
    (30, "enableServiceLinks", Ty::BoolKeep),
    (31, "preemptionPolicy", Ty::StrKeep),
    (32, "overhead", Ty::QtyMap),
    (
        33,
        "topologySpreadConstraints",
        Ty::Msgs(TOPOLOGY_SPREAD_CONSTRAINT),
    ),
    (35, "setHostnameAsFQDN", Ty::BoolKeep),
    (36, "os", Ty::Msg(NAME_ONLY)),
    (37, "hostUsers", Ty::BoolKeep),
    (38, "schedulingGates", Ty::Msgs(NAME_ONLY)),
    (40, "resources", Ty::Msg(RESOURCE_REQUIREMENTS)),
    (41, "hostnameOverride", Ty::StrKeep),
];

const POD_TEMPLATE_SPEC: &[Spec] = &[
    (1, "metadata", Ty::Msg(OBJECT_META)),
    (2, "spec", Ty::Msg(POD_SPEC)),
];

/// A status a client cannot set on create: kept as the `{}` JSON would carry.
const EMPTY: &[Spec] = &[];

/// Service and Ingress status: JSON carries `{"loadBalancer": {}}`.
const LOAD_BALANCER_STATUS: &[Spec] = &[(1, "loadBalancer", Ty::Msg(EMPTY))];

const POD: &[Spec] = &[
    (2, "spec", Ty::Msg(POD_SPEC)),
    (3, "status", Ty::Msg(EMPTY)),
];

const DEPLOYMENT_SPEC: &[Spec] = &[
    (1, "replicas", Ty::I32Keep),
    (2, "selector", Ty::Msg(LABEL_SELECTOR)),
    (3, "template", Ty::Msg(POD_TEMPLATE_SPEC)),
    (
        4,
        "strategy",
        Ty::Msg(&[
            (1, "type", Ty::Str),
            (
                2,
                "rollingUpdate",
                Ty::Msg(&[
                    (1, "maxUnavailable", Ty::IntOrStr),
                    (2, "maxSurge", Ty::IntOrStr),
                ]),
            ),
        ]),
    ),
    (5, "minReadySeconds", Ty::I32),
    (6, "revisionHistoryLimit", Ty::I32Keep),
    (7, "paused", Ty::Bool),
    (9, "progressDeadlineSeconds", Ty::I32Keep),
];

const DEPLOYMENT: &[Spec] = &[
    (2, "spec", Ty::Msg(DEPLOYMENT_SPEC)),
    (3, "status", Ty::Msg(EMPTY)),
];

const SERVICE_PORT: &[Spec] = &[
    (1, "name", Ty::Str),
    (2, "protocol", Ty::Str),
    (6, "appProtocol", Ty::StrKeep),
    (3, "port", Ty::I32Keep),
    // A non-pointer IntOrString: JSON carries it even when 0, and so does this.
    (4, "targetPort", Ty::IntOrStr),
    (5, "nodePort", Ty::I32),
];

const SERVICE_SPEC: &[Spec] = &[
    (1, "ports", Ty::Msgs(SERVICE_PORT)),
    (2, "selector", Ty::StrMap),
    (3, "clusterIP", Ty::Str),
    (18, "clusterIPs", Ty::Strs),
    (4, "type", Ty::Str),
    (5, "externalIPs", Ty::Strs),
    (7, "sessionAffinity", Ty::Str),
    (8, "loadBalancerIP", Ty::Str),
    (9, "loadBalancerSourceRanges", Ty::Strs),
    (10, "externalName", Ty::Str),
    (11, "externalTrafficPolicy", Ty::Str),
    (12, "healthCheckNodePort", Ty::I32),
    (13, "publishNotReadyAddresses", Ty::Bool),
    (
        14,
        "sessionAffinityConfig",
        Ty::Msg(&[(
            1,
            "clientIP",
            Ty::Msg(&[(1, "timeoutSeconds", Ty::I32Keep)]),
        )]),
    ),
    (19, "ipFamilies", Ty::Strs),
    (17, "ipFamilyPolicy", Ty::StrKeep),
    (20, "allocateLoadBalancerNodePorts", Ty::BoolKeep),
    (21, "loadBalancerClass", Ty::StrKeep),
    (22, "internalTrafficPolicy", Ty::StrKeep),
    (23, "trafficDistribution", Ty::StrKeep),
];

const SERVICE: &[Spec] = &[
    (2, "spec", Ty::Msg(SERVICE_SPEC)),
    (3, "status", Ty::Msg(LOAD_BALANCER_STATUS)),
];

const JOB_SPEC: &[Spec] = &[
    (1, "parallelism", Ty::I32Keep),
    (2, "completions", Ty::I32Keep),
    (3, "activeDeadlineSeconds", Ty::I64Keep),
    (7, "backoffLimit", Ty::I32Keep),
    (12, "backoffLimitPerIndex", Ty::I32Keep),
    (13, "maxFailedIndexes", Ty::I32Keep),
    (4, "selector", Ty::Msg(LABEL_SELECTOR)),
    (5, "manualSelector", Ty::BoolKeep),
    (6, "template", Ty::Msg(POD_TEMPLATE_SPEC)),
    (8, "ttlSecondsAfterFinished", Ty::I32Keep),
    (9, "completionMode", Ty::StrKeep),
    (10, "suspend", Ty::BoolKeep),
    (14, "podReplacementPolicy", Ty::StrKeep),
    (15, "managedBy", Ty::StrKeep),
];

const JOB: &[Spec] = &[
    (2, "spec", Ty::Msg(JOB_SPEC)),
    (3, "status", Ty::Msg(EMPTY)),
];

const CRON_JOB_SPEC: &[Spec] = &[
    (1, "schedule", Ty::StrKeep),
    (8, "timeZone", Ty::StrKeep),
    (2, "startingDeadlineSeconds", Ty::I64Keep),
    (3, "concurrencyPolicy", Ty::Str),
    (4, "suspend", Ty::BoolKeep),
    (
        5,
        "jobTemplate",
        Ty::Msg(&[
            (1, "metadata", Ty::Msg(OBJECT_META)),
            (2, "spec", Ty::Msg(JOB_SPEC)),
        ]),
    ),
    (6, "successfulJobsHistoryLimit", Ty::I32Keep),
    (7, "failedJobsHistoryLimit", Ty::I32Keep),
];

const CRON_JOB: &[Spec] = &[
    (2, "spec", Ty::Msg(CRON_JOB_SPEC)),
    (3, "status", Ty::Msg(EMPTY)),
];

const INGRESS_BACKEND: &[Spec] = &[
    (
        4,
        "service",
        Ty::Msg(&[
            (1, "name", Ty::StrKeep),
            (
                2,
                "port",
                Ty::Msg(&[(1, "name", Ty::Str), (2, "number", Ty::I32)]),
            ),
        ]),
    ),
    (
        3,
        "resource",
        Ty::Msg(&[
            (1, "apiGroup", Ty::StrKeep),
            (2, "kind", Ty::StrKeep),
            (3, "name", Ty::StrKeep),
        ]),
    ),
];

const HTTP_INGRESS_PATH: &[Spec] = &[
    (1, "path", Ty::Str),
    (3, "pathType", Ty::StrKeep),
    (2, "backend", Ty::Msg(INGRESS_BACKEND)),
];

const INGRESS_RULE: &[Spec] = &[
    (1, "host", Ty::Str),
    (
        2,
        "",
        Ty::Inline(&[(
            1,
            "http",
            Ty::Msg(&[(1, "paths", Ty::Msgs(HTTP_INGRESS_PATH))]),
        )]),
    ),
];

const INGRESS_SPEC: &[Spec] = &[
    (4, "ingressClassName", Ty::StrKeep),
    (1, "defaultBackend", Ty::Msg(INGRESS_BACKEND)),
    (
        2,
        "tls",
        Ty::Msgs(&[(1, "hosts", Ty::Strs), (2, "secretName", Ty::Str)]),
    ),
    (3, "rules", Ty::Msgs(INGRESS_RULE)),
];

const INGRESS: &[Spec] = &[
    (2, "spec", Ty::Msg(INGRESS_SPEC)),
    (3, "status", Ty::Msg(LOAD_BALANCER_STATUS)),
];

/// Decode an envelope into the JSON object it encodes.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing k8s magic"))?;
    let env = fields(rest)?;
    let tm = fields(single(&env, 1).unwrap_or(&[]))?;
    let api_version = single(&tm, 1).map(text).unwrap_or_default();
    let kind = single(&tm, 2).map(text).unwrap_or_default();
    let raw = fields(single(&env, 2).unwrap_or(&[]))?;
    let mut obj = Map::new();
    obj.insert("kind".into(), json!(kind));
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert(
        "metadata".into(),
        match merged(&payloads(&raw, 1)?) {
            Some(m) => object_meta(&m)?,
            None => json!({}),
        },
    );
    match kind.as_str() {
        // `kubectl create serviceaccount` sends metadata only.
        "Namespace" | "ServiceAccount" => {}
        // `kubectl create role|clusterrole|rolebinding|clusterrolebinding`.
        "Role" | "ClusterRole" => {
            let rules = repeated(&raw, 2)
                .into_iter()
                .map(policy_rule)
                .collect::<Result<Vec<_>, _>>()?;
            obj.insert("rules".into(), Value::Array(rules));
            if let Some(agg) = single(&raw, 3) {
                let f = fields(agg)?;
                let selectors = repeated(&f, 1)
                    .into_iter()
                    .map(label_selector)
                    .collect::<Result<Vec<_>, _>>()?;
                obj.insert(
                    "aggregationRule".into(),
                    json!({"clusterRoleSelectors": selectors}),
                );
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let mut subjects = Vec::new();
            for sb in repeated(&raw, 2) {
                let f = fields(sb)?;
                let mut m = Map::new();
                for (n, k) in [(1, "kind"), (2, "apiGroup"), (3, "name"), (4, "namespace")] {
                    if let Some(x) = single(&f, n) {
                        m.insert(k.into(), json!(text(x)));
                    }
                }
                subjects.push(Value::Object(m));
            }
            if !subjects.is_empty() {
                obj.insert("subjects".into(), Value::Array(subjects));
            }
            let f = fields(single(&raw, 3).unwrap_or(&[]))?;
            obj.insert(
                "roleRef".into(),
                json!({
                    "apiGroup": single(&f, 1).map(text).unwrap_or_default(),
                    "kind": single(&f, 2).map(text).unwrap_or_default(),
                    "name": single(&f, 3).map(text).unwrap_or_default(),
                }),
            );
        }
        "ConfigMap" => {
            let data = repeated(&raw, 2);
            if !data.is_empty() {
                obj.insert("data".into(), string_map(&data, false)?);
            }
            let bin = repeated(&raw, 3);
            if !bin.is_empty() {
                obj.insert("binaryData".into(), string_map(&bin, true)?);
            }
        }
        "Secret" => {
            let data = repeated(&raw, 2);
            if !data.is_empty() {
                obj.insert("data".into(), string_map(&data, true)?);
            }
            if let Some(t) = single(&raw, 3) {
                obj.insert("type".into(), json!(text(t)));
            }
            let sd = repeated(&raw, 4);
            if !sd.is_empty() {
                obj.insert("stringData".into(), string_map(&sd, false)?);
            }
        }
        // The review and token kinds have one decoder, next to the code that answers them.
        "SelfSubjectAccessReview"
        | "SelfSubjectRulesReview"
        | "SelfSubjectReview"
        | "TokenRequest"
        | "SubjectAccessReview"
        | "LocalSubjectAccessReview"
        | "TokenReview" => {
            return crate::auth::decode_k8s_protobuf(body).map_err(|e| {
                ApiError::bad_request(format!("unable to decode protobuf body: {e}"))
            });
        }
        "Deployment" | "Service" | "Job" | "CronJob" | "Pod" | "Ingress" => {
            let spec = match kind.as_str() {
                "Deployment" => DEPLOYMENT,
                "Service" => SERVICE,
                "Job" => JOB,
                "CronJob" => CRON_JOB,
                "Pod" => POD,
                _ => INGRESS,
            };
            decode_into(single(&env, 2).unwrap_or(&[]), spec, &mut obj)?;
        }
        other => {
            return Err(ApiError::unsupported_media(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (protobuf is not supported for {other})"
            )));
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(num << 3) | 2, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_configmap() {
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let label = [field(1, b"app"), field(2, b"web")].concat();
        let meta = [field(1, b"cm"), field(11, &label)].concat();
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let raw = [field(1, &meta), field(2, &entry)].concat();
        let body = [MAGIC.to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode(&body).map_err(|e| e.message);
        assert_eq!(
            v,
            Ok(json!({"kind":"ConfigMap","apiVersion":"v1",
                "metadata":{"name":"cm","labels":{"app":"web"}},"data":{"k":"v"}}))
        );
        assert!(decode(b"nope").is_err());
        assert!(decode(&[MAGIC, &[0x0a, 0x50]].concat()).is_err());
    }

    fn enc_varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    /// A length-delimited field (any length, unlike `field`).
    fn b(num: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        enc_varint((num << 3) | 2, &mut out);
        enc_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    fn s(num: u64, text: &str) -> Vec<u8> {
        b(num, text.as_bytes())
    }

    fn v(num: u64, value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        enc_varint(num << 3, &mut out);
        enc_varint(value, &mut out);
        out
    }

    fn entry(k: &str, val: &[u8]) -> Vec<u8> {
        [s(1, k), b(2, val)].concat()
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = [s(1, api_version), s(2, kind)].concat();
        [MAGIC.to_vec(), b(1, &tm), b(2, raw)].concat()
    }

    fn quantity_of(q: &str) -> Vec<u8> {
        s(1, q)
    }

    /// What gogo-protobuf writes for a zero ObjectMeta: every string, and the zero time as an
    /// empty message.
    fn empty_meta() -> Vec<u8> {
        [s(1, ""), s(2, ""), s(3, ""), v(7, 0), b(8, &[])].concat()
    }

    /// A container as `kubectl create deployment --image=nginx --port=80 -- sh` builds it,
    /// with gogo's zero values written out.
    fn container() -> Vec<u8> {
        let port = [s(1, ""), v(2, 0), v(3, 80), s(4, ""), s(5, "")].concat();
        [
            s(1, "nginx"),
            s(2, "nginx"),
            s(3, "sh"),
            s(3, "-c"),
            s(5, ""),
            b(6, &port),
            b(8, &[]),
            s(13, ""),
            s(20, ""),
            s(14, ""),
            v(16, 0),
            v(17, 0),
            v(18, 0),
        ]
        .concat()
    }

    #[test]
    fn decodes_a_deployment_dropping_gogo_zero_values() {
        let labels = entry("app", b"nginx");
        let meta = [empty_meta(), s(1, "nginx"), b(11, &labels)].concat();
        let pod_spec = [
            b(2, &container()),
            s(3, ""),
            v(4, 0),
            s(6, ""),
            s(8, ""),
            v(11, 0),
            // A field this decoder does not know is skipped.
            v(99, 7),
        ]
        .concat();
        let template = [
            b(1, &[empty_meta(), b(11, &labels)].concat()),
            b(2, &pod_spec),
        ]
        .concat();
        let spec = [
            v(1, 0),
            b(2, &b(1, &labels)),
            b(3, &template),
            b(4, &s(1, "")),
            v(5, 0),
            v(7, 0),
        ]
        .concat();
        let raw = [b(1, &meta), b(2, &spec), b(3, &[])].concat();
        let got = decode(&envelope("apps/v1", "Deployment", &raw)).map_err(|e| e.message);
        assert_eq!(
            got,
            Ok(json!({"kind":"Deployment","apiVersion":"apps/v1",
                "metadata":{"name":"nginx","labels":{"app":"nginx"}},
                "spec":{
                    // Pointers keep an explicit zero.
                    "replicas":0,
                    "selector":{"matchLabels":{"app":"nginx"}},
                    "template":{"metadata":{"labels":{"app":"nginx"}},"spec":{
                        "containers":[{"name":"nginx","image":"nginx","command":["sh","-c"],
                            "ports":[{"containerPort":80}],"resources":{}}],
                        "terminationGracePeriodSeconds":0}},
                    "strategy":{}},
                "status":{}}))
        );
    }

    #[test]
    fn decodes_service_ports_with_int_or_string_target_ports() {
        let int_port = [v(1, 0), v(2, 8080), s(3, "")].concat();
        let str_port = [v(1, 1), v(2, 0), s(3, "http")].concat();
        let p1 = [
            s(1, "80-8080"),
            s(2, "TCP"),
            v(3, 80),
            b(4, &int_port),
            v(5, 0),
        ]
        .concat();
        let p2 = [
            s(1, ""),
            s(2, "TCP"),
            v(3, 443),
            b(4, &str_port),
            v(5, 30443),
        ]
        .concat();
        let spec = [
            b(1, &p1),
            b(1, &p2),
            b(2, &entry("app", b"web")),
            s(3, "None"),
            s(4, "NodePort"),
            s(7, ""),
            s(10, ""),
            s(11, ""),
            v(12, 0),
            v(13, 0),
        ]
        .concat();
        let raw = [b(1, &s(1, "web")), b(2, &spec), b(3, &b(1, &[]))].concat();
        let got = decode(&envelope("v1", "Service", &raw)).map_err(|e| e.message);
        assert_eq!(
            got,
            Ok(
                json!({"kind":"Service","apiVersion":"v1","metadata":{"name":"web"},
                "spec":{"ports":[
                    {"name":"80-8080","protocol":"TCP","port":80,"targetPort":8080},
                    {"protocol":"TCP","port":443,"targetPort":"http","nodePort":30443}],
                    "selector":{"app":"web"},"clusterIP":"None","type":"NodePort"},
                "status":{"loadBalancer":{}}})
            )
        );
    }

    #[test]
    fn decodes_a_pod_with_env_resources_volumes_and_owner() {
        let owner = [
            s(5, "batch/v1"),
            s(1, "CronJob"),
            s(3, "cj"),
            s(4, "u-1"),
            v(6, 1),
            v(7, 0),
        ]
        .concat();
        let meta = [
            s(2, "p-"),
            b(12, &entry("a", b"b")),
            b(13, &owner),
            b(8, &v(1, 0)),
        ]
        .concat();
        let key_ref = [b(1, &s(1, "cm")), s(2, "k"), v(3, 0)].concat();
        let env = [
            [s(1, "A"), s(2, "1")].concat(),
            [s(1, "B"), s(2, "")].concat(),
            [s(1, "C"), s(2, ""), b(3, &b(3, &key_ref))].concat(),
        ];
        let resources = [
            b(1, &entry("cpu", &quantity_of("500m"))),
            b(2, &entry("memory", &quantity_of("64Mi"))),
        ]
        .concat();
        let mount = [s(1, "scratch"), v(2, 1), s(3, "/tmp"), s(4, "")].concat();
        let probe = [
            b(1, &b(2, &[s(1, "/healthz"), b(2, &v(2, 80))].concat())),
            v(2, 5),
        ]
        .concat();
        let c = [
            s(1, "c"),
            s(2, "busybox"),
            b(7, &env[0]),
            b(7, &env[1]),
            b(7, &env[2]),
            b(8, &resources),
            b(9, &mount),
            b(11, &probe),
            s(14, "IfNotPresent"),
            v(16, 1),
            v(18, 1),
            // int32 -1 is a ten-byte varint.
            b(15, &v(4, u64::MAX)),
        ]
        .concat();
        let volume = [s(1, "scratch"), b(2, &b(2, &[s(1, ""), v(3, 0)].concat()))].concat();
        let spec = [
            b(1, &volume),
            b(2, &c),
            s(3, "Never"),
            s(6, "ClusterFirst"),
            b(7, &entry("disk", b"ssd")),
            s(8, "robot"),
            b(14, &[v(2, 1000), v(4, 5), v(4, 6)].concat()),
            b(15, &s(1, "regcred")),
        ]
        .concat();
        let raw = [b(1, &meta), b(2, &spec), b(3, &[])].concat();
        let got = decode(&envelope("v1", "Pod", &raw)).map_err(|e| e.message);
        assert_eq!(
            got,
            Ok(json!({"kind":"Pod","apiVersion":"v1",
                "metadata":{"generateName":"p-","annotations":{"a":"b"},
                    "ownerReferences":[{"apiVersion":"batch/v1","kind":"CronJob","name":"cj",
                        "uid":"u-1","controller":true,"blockOwnerDeletion":false}],
                    // An explicit epoch is not the zero time, so it is kept.
                    "creationTimestamp":"1970-01-01T00:00:00Z"},
                "spec":{
                    "volumes":[{"name":"scratch","emptyDir":{"mode":0}}],
                    "containers":[{"name":"c","image":"busybox",
                        "env":[{"name":"A","value":"1"},{"name":"B"},
                            {"name":"C","valueFrom":{"configMapKeyRef":
                                {"name":"cm","key":"k","optional":false}}}],
                        "resources":{"limits":{"cpu":"500m"},"requests":{"memory":"64Mi"}},
                        "volumeMounts":[{"name":"scratch","readOnly":true,"mountPath":"/tmp"}],
                        "readinessProbe":{"httpGet":{"path":"/healthz","port":80},
                            "initialDelaySeconds":5},
                        "imagePullPolicy":"IfNotPresent","stdin":true,"tty":true,
                        "securityContext":{"runAsUser":-1}}],
                    "restartPolicy":"Never","dnsPolicy":"ClusterFirst",
                    "nodeSelector":{"disk":"ssd"},"serviceAccountName":"robot",
                    "securityContext":{"runAsUser":1000,"supplementalGroups":[5,6]},
                    "imagePullSecrets":[{"name":"regcred"}]},
                "status":{}}))
        );
    }

    #[test]
    fn decodes_a_cronjob_and_an_ingress() {
        // The zero time as seconds is dropped like the empty message.
        let zero_time = v(1, ZERO_TIME_SECONDS as u64);
        assert_eq!(time(&zero_time).map_err(|e| e.message), Ok(None));
        let pod_spec = [
            b(2, &[s(1, "cj"), s(2, "busybox")].concat()),
            s(3, "OnFailure"),
        ]
        .concat();
        let job_spec = b(6, &[b(1, &empty_meta()), b(2, &pod_spec)].concat());
        let spec = [
            s(1, "*/5 * * * *"),
            s(3, ""),
            b(5, &[b(1, &s(1, "cj")), b(2, &job_spec)].concat()),
        ]
        .concat();
        let raw = [b(1, &s(1, "cj")), b(2, &spec), b(3, &[])].concat();
        let got = decode(&envelope("batch/v1", "CronJob", &raw)).map_err(|e| e.message);
        assert_eq!(
            got,
            Ok(
                json!({"kind":"CronJob","apiVersion":"batch/v1","metadata":{"name":"cj"},
                "spec":{"schedule":"*/5 * * * *","jobTemplate":{"metadata":{"name":"cj"},
                    "spec":{"template":{"metadata":{},"spec":{
                        "containers":[{"name":"cj","image":"busybox"}],
                        "restartPolicy":"OnFailure"}}}}},
                "status":{}})
            )
        );

        let backend = |name: &str, port: Vec<u8>| b(4, &[s(1, name), b(2, &port)].concat());
        let path = [
            s(1, "/bar"),
            s(3, "Exact"),
            b(2, &backend("svc1", [s(1, ""), v(2, 8080)].concat())),
        ]
        .concat();
        let rule = [s(1, "foo.com"), b(2, &b(1, &b(1, &path)))].concat();
        let spec = [
            s(4, "nginx"),
            b(1, &backend("def", [s(1, "http"), v(2, 0)].concat())),
            b(2, &[s(1, "foo.com"), s(2, "my-cert")].concat()),
            b(3, &rule),
        ]
        .concat();
        let raw = [b(1, &s(1, "ing")), b(2, &spec)].concat();
        let got = decode(&envelope("networking.k8s.io/v1", "Ingress", &raw)).map_err(|e| e.message);
        assert_eq!(
            got,
            Ok(json!({"kind":"Ingress","apiVersion":"networking.k8s.io/v1",
                "metadata":{"name":"ing"},
                "spec":{"ingressClassName":"nginx",
                    "defaultBackend":{"service":{"name":"def","port":{"name":"http"}}},
                    "tls":[{"hosts":["foo.com"],"secretName":"my-cert"}],
                    "rules":[{"host":"foo.com","http":{"paths":[{"path":"/bar",
                        "pathType":"Exact","backend":{"service":{"name":"svc1",
                            "port":{"number":8080}}}}]}}]}}))
        );
    }

    #[test]
    fn malformed_workload_bodies_are_bad_requests() {
        let status = |body: &[u8]| decode(body).map(|_| ()).map_err(|e| e.code);
        // A varint where the table expects a string, and a string where it expects a varint.
        assert_eq!(status(&envelope("v1", "Pod", &v(1, 3))), Err(400));
        let spec = b(2, &b(2, &s(16, "yes")));
        assert_eq!(status(&envelope("v1", "Pod", &spec)), Err(400));
        // A truncated fixed64 and a nested message whose length runs past its parent.
        assert_eq!(status(&envelope("v1", "Pod", &[0x09, 1, 2])), Err(400));
        assert_eq!(
            status(&envelope("v1", "Pod", &[0x12, 2, 0x12, 9])),
            Err(400)
        );
        // Unsupported kinds are still 415.
        assert_eq!(status(&envelope("apps/v1", "StatefulSet", &[])), Err(415));
        // No prefix of a valid body panics.
        let pod = [b(2, &b(2, &container())), b(1, &empty_meta())].concat();
        let body = envelope("v1", "Pod", &pod);
        assert!(decode(&body).is_ok());
        for cut in 0..body.len() {
            let _ = decode(&body[..cut]);
        }
    }
}
