//! The `crds` field: files of OpenAPI definitions (keyed `group.version.Kind`) whose
//! properties mark name references with `x-kubernetes-object-ref-api-version` and
//! `x-kubernetes-object-ref-kind` (and optionally `x-kubernetes-object-ref-name-key`).
//! Each such property becomes a name-reference entry for the custom kind, as kustomize
//! v5.8.1 reads them: properties are followed only through `$ref`, and only definitions
//! that look like Kubernetes types (with `kind`, `apiVersion` and `metadata`) are roots.

use serde_json::{Map, Value};

use super::nameref::RefSpec;

/// How deep `$ref` chains are followed: a cycle in a definitions file must end.
const MAX_DEPTH: usize = 16;
/// How many properties one file may make the walk examine: shared `$ref`s fan out, and a
/// small file must not cost exponential time.
const MAX_VISITS: usize = 100_000;
/// How many references one build may declare (real files declare a handful): each is
/// checked against every object.
pub(crate) const MAX_REFS: usize = 1_000;

/// Extensions that would make kustomize add annotation, label or prefix fields; lockstep
/// refuses them rather than building something different.
const REFUSED: [&str; 3] = [
    "x-kubernetes-annotation",
    "x-kubernetes-label-selector",
    "x-kubernetes-identity",
];

/// The name-reference entries of one definitions file (already parsed). Errors carry the
/// key path inside the file.
pub(crate) fn ref_specs(doc: &Value) -> Result<Vec<RefSpec>, String> {
    let Value::Object(defs) = doc else {
        return Err("must be a map of OpenAPI definitions".into());
    };
    let mut out = Vec::new();
    let mut budget = MAX_VISITS;
    for (name, _) in defs {
        let props = properties(defs, name)?;
        let looks_k8s = props.is_some_and(|p| {
            ["kind", "apiVersion", "metadata"]
                .iter()
                .all(|k| p.contains_key(*k))
        });
        if !looks_k8s {
            continue;
        }
        if name.split('.').count() < 3 {
            return Err(format!(
                "{name}: a definition name must be group.version.Kind"
            ));
        }
        let kind = name.rsplit('.').next().unwrap_or_default();
        walk(defs, name, kind, &mut Vec::new(), &mut out, 0, &mut budget)?;
    }
    Ok(out)
}

/// The `properties` of definition `name`, if it has a schema. Go's JSON decoding in
/// kustomize accepts `Schema` in any letter case.
fn properties<'a>(
    defs: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    let Some(def) = defs.get(name) else {
        return Ok(None);
    };
    let Value::Object(def) = def else {
        return Err(format!("{name}: must be a map"));
    };
    let schema = def.get("Schema").or_else(|| {
        def.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("schema"))
            .map(|(_, v)| v)
    });
    let Some(schema) = schema else {
        return Ok(None);
    };
    match schema.get("properties") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(p)) => Ok(Some(p)),
        Some(_) => Err(format!("{name}.Schema.properties: must be a map")),
    }
}

fn walk(
    defs: &Map<String, Value>,
    type_name: &str,
    kind: &str,
    path: &mut Vec<String>,
    out: &mut Vec<RefSpec>,
    depth: usize,
    budget: &mut usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{type_name}: $ref chain deeper than {MAX_DEPTH} (a cycle?)"
        ));
    }

    let Some(props) = properties(defs, type_name)? else {
        return Ok(());
    };
    for (prop, schema) in props {
        *budget = budget.checked_sub(1).ok_or_else(|| {
            format!(
                "{type_name}: the definitions make the walk examine more than {MAX_VISITS} properties"
            )
        })?;
        let Value::Object(schema) = schema else {
            continue;
        };
        let at = || format!("{type_name}.Schema.properties.{prop}");
        for ext in REFUSED {
            if schema.get(ext).is_some_and(Value::is_string) {
                return Err(format!(
                    "{}.{ext}: custom annotation, label and name fields are not supported; only name references (x-kubernetes-object-ref-*) are",
                    at()
                ));
            }
        }
        let ext = |k: &str| schema.get(k).and_then(Value::as_str);
        if let (Some(version), Some(target)) = (
            ext("x-kubernetes-object-ref-api-version"),
            ext("x-kubernetes-object-ref-kind"),
        ) {
            let key = ext("x-kubernetes-object-ref-name-key").unwrap_or("name");
            let mut p: Vec<String> = path.clone();
            p.push(prop.clone());
            p.push(key.to_owned());
            if out.len() >= MAX_REFS {
                return Err(format!("{}: more than {MAX_REFS} name references", at()));
            }
            out.push(RefSpec {
                target: target.to_owned(),
                target_version: Some(version.to_owned()).filter(|v| !v.is_empty()),
                referrer: kind.to_owned(),
                referrer_group: None,
                path: p,
                sibling: None,
            });
        }
        if let Some(r) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            path.push(prop.clone());
            walk(defs, r, kind, path, out, depth + 1, budget)?;
            path.pop();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(yaml: &str) -> Result<Vec<RefSpec>, String> {
        let v: Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        ref_specs(&v)
    }

    #[test]
    fn references_are_found_through_refs_only() {
        let got = specs(
            "example.com.v1.App:
  Schema:
    properties:
      apiVersion: {type: string}
      kind: {type: string}
      metadata: {type: object}
      spec: {$ref: example.com.v1.AppSpec}
      inline:
        properties:
          cm: {x-kubernetes-object-ref-api-version: v1, x-kubernetes-object-ref-kind: ConfigMap}
example.com.v1.AppSpec:
  schema:
    properties:
      config: {x-kubernetes-object-ref-api-version: v1, x-kubernetes-object-ref-kind: ConfigMap}
      creds:
        x-kubernetes-object-ref-api-version: v1
        x-kubernetes-object-ref-kind: Secret
        x-kubernetes-object-ref-name-key: secretName
",
        )
        .expect("parses");
        let mut got: Vec<(String, String, String)> = got
            .into_iter()
            .map(|s| (s.referrer, s.target, s.path.join("/")))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("App".into(), "ConfigMap".into(), "spec/config/name".into()),
                (
                    "App".into(),
                    "Secret".into(),
                    "spec/creds/secretName".into()
                ),
            ]
        );
    }

    #[test]
    fn cycles_end_and_bad_shapes_are_errors() {
        let e = specs(
            "a.v1.Loop:
  Schema:
    properties:
      apiVersion: {}
      kind: {}
      metadata: {}
      next: {$ref: a.v1.Loop}
",
        )
        .expect_err("cycle");
        assert!(e.contains("deeper than"), "{e}");
        let mut fan = String::from(
            "a.v1.K:\n  Schema:\n    properties:\n      apiVersion: {}\n      kind: {}\n      metadata: {}\n",
        );
        for i in 0..10 {
            fan += &format!("      p{i}: {{$ref: a.v1.T0}}\n");
        }
        for d in 0..12 {
            fan += &format!("a.v1.T{d}:\n  Schema:\n    properties:\n");
            for i in 0..10 {
                fan += &format!("      p{i}: {{$ref: a.v1.T{}}}\n", d + 1);
            }
        }
        let e = specs(&fan).expect_err("fan-out");
        assert!(e.contains("more than 100000 properties"), "{e}");
        let mut many = String::from(
            "a.v1.K:\n  Schema:\n    properties:\n      apiVersion: {}\n      kind: {}\n      metadata: {}\n",
        );
        for i in 0..=MAX_REFS {
            many += &format!(
                "      r{i}: {{x-kubernetes-object-ref-api-version: v1, x-kubernetes-object-ref-kind: ConfigMap}}\n"
            );
        }
        let e = specs(&many).expect_err("too many references");
        assert!(e.contains("more than 1000 name references"), "{e}");
        let e =
            specs("v1.Short:\n  Schema: {properties: {apiVersion: {}, kind: {}, metadata: {}}}\n")
                .expect_err("short name");
        assert!(e.contains("group.version.Kind"), "{e}");
        let e = specs("[1, 2]").expect_err("not a map");
        assert!(e.contains("map of OpenAPI definitions"), "{e}");
        let e = specs(
            "a.v1.K:\n  Schema:\n    properties:\n      apiVersion: {}\n      kind: {}\n      metadata: {}\n      sel: {x-kubernetes-label-selector: \"\"}\n",
        )
        .expect_err("label fields");
        assert!(
            e.contains("a.v1.K.Schema.properties.sel.x-kubernetes-label-selector"),
            "{e}"
        );
    }
}
