//! Human output of the admin CLI: aligned tables for lists and `key: value`
//! lines for single objects. Hand-written and small on purpose; `--json`
//! bypasses all of it.

use serde_json::Value;

/// The value at a dotted path (`binding.fingerprint`), or null.
pub fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |v, name| &v[name])
}

/// One cell: null as `-`, strings bare, arrays of scalars comma-separated,
/// anything else as compact JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
            if items.is_empty() {
                "-".into()
            } else {
                items.iter().map(cell).collect::<Vec<_>>().join(", ")
            }
        }
        _ => value.to_string(),
    }
}

/// The first non-null value among dotted paths (the staff and customer views
/// of a license name some members differently).
pub fn first(value: &Value, paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| at(value, p))
        .find(|v| !v.is_null())
        .map_or_else(|| "-".into(), cell)
}

/// A table of the objects in the array `items`: one column per `(header,
/// paths)`, each cell the first non-null of the paths ([`first`]).
pub fn list(items: &Value, columns: &[(&str, &[&str])]) -> String {
    let headers: Vec<&str> = columns.iter().map(|(header, _)| *header).collect();
    let rows: Vec<Vec<String>> = items
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, paths)| first(item, paths))
                .collect()
        })
        .collect();
    table(&headers, &rows)
}

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(c);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(w - c.chars().count()));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `key: value` lines for an object, nested objects flattened with dots
/// (`entitlements.limits.seats: 25`): the top-level members named in `lead`
/// first, in that order, then the others by name; members named in `skip`
/// (dotted) are left out.
pub fn fields(value: &Value, lead: &[&str], skip: &[&str]) -> String {
    let mut out = String::new();
    let Value::Object(members) = value else {
        flatten(value, "", skip, &mut out);
        return out;
    };
    let mut skip_rest: Vec<&str> = skip.to_vec();
    for name in lead {
        if let Some(v) = members.get(*name)
            && !skip.contains(name)
        {
            flatten(v, name, skip, &mut out);
        }
        skip_rest.push(name);
    }
    flatten(value, "", &skip_rest, &mut out);
    out
}

fn flatten(value: &Value, prefix: &str, skip: &[&str], out: &mut String) {
    match value {
        Value::Object(members) if !members.is_empty() => {
            for (name, v) in members {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                if !skip.contains(&key.as_str()) {
                    flatten(v, &key, skip, out);
                }
            }
        }
        // An empty object (no policy overrides) still shows its name.
        Value::Object(_) => out.push_str(&format!("{prefix}: -\n")),
        _ => out.push_str(&format!("{prefix}: {}\n", cell(value))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_end_clean() {
        let out = table(
            &["ID", "STATUS", "NOTE"],
            &[
                vec!["a".into(), "active".into(), "x".into()],
                vec!["bbbb".into(), "-".into(), "".into()],
            ],
        );
        assert_eq!(out, "ID    STATUS  NOTE\na     active  x\nbbbb  -\n");
    }

    #[test]
    fn fields_flatten() {
        let v = json!({"id": "lic_1", "entitlements": {"product": "gw", "features": ["a", "b"], "limits": {"seats": 3}},
                       "policy": {}, "chain": ["t"], "grace_expires_at": null, "n": 7, "features2": []});
        assert_eq!(
            fields(&v, &["id", "n"], &["chain"]),
            "id: lic_1\nn: 7\nentitlements.features: a, b\nentitlements.limits.seats: 3\n\
             entitlements.product: gw\nfeatures2: -\ngrace_expires_at: -\npolicy: -\n"
        );
        assert_eq!(first(&v, &["nope", "entitlements.product"]), "gw");
        assert_eq!(first(&v, &["nope"]), "-");
    }
}
