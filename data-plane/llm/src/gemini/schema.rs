//! JSON Schema → Gemini's Schema subset (edge 8): local `$ref`s inlined, keywords Gemini
//! rejects (`additionalProperties`, `$schema`, `$defs`, `default`, `examples`, `title`, …)
//! removed, `const` → `enum`, `["T", "null"]` → `T` + `nullable`, `oneOf` → `anyOf`.

use serde_json::{Map, Value, json};

const KEEP: &[&str] = &[
    "type",
    "format",
    "description",
    "nullable",
    "enum",
    "properties",
    "required",
    "items",
    "anyOf",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "propertyOrdering",
    "minProperties",
    "maxProperties",
];

pub fn sanitize_schema(schema: &Value) -> Value {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .cloned()
        .unwrap_or(Value::Null);
    clean(schema, &defs, 0)
}

fn resolve<'a>(r: &str, defs: &'a Value) -> Option<&'a Value> {
    let name = r
        .strip_prefix("#/$defs/")
        .or_else(|| r.strip_prefix("#/definitions/"))?;
    defs.get(name)
}

fn clean(v: &Value, defs: &Value, depth: usize) -> Value {
    if depth > 32 {
        return json!({"type": "object"});
    }
    let Some(o) = v.as_object() else {
        return v.clone();
    };
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        return match resolve(r, defs) {
            Some(target) => clean(target, defs, depth + 1),
            None => json!({"type": "object"}),
        };
    }
    let mut out = Map::new();
    for (k, val) in o {
        match k.as_str() {
            "properties" => {
                let props: Map<String, Value> = val
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(n, s)| (n.clone(), clean(s, defs, depth + 1)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" => {
                out.insert(k.clone(), clean(val, defs, depth + 1));
            }
            "anyOf" | "oneOf" => {
                let alts: Vec<Value> = val
                    .as_array()
                    .map(|a| a.iter().map(|s| clean(s, defs, depth + 1)).collect())
                    .unwrap_or_default();
                out.insert("anyOf".into(), Value::Array(alts));
            }
            "const" => {
                out.insert("enum".into(), json!([val]));
            }
            "type" => match val {
                Value::Array(ts) => {
                    let non_null: Vec<&Value> =
                        ts.iter().filter(|t| t.as_str() != Some("null")).collect();
                    if non_null.len() < ts.len() {
                        out.insert("nullable".into(), json!(true));
                    }
                    if let Some(t) = non_null.first() {
                        out.insert("type".into(), (*t).clone());
                    }
                }
                _ => {
                    out.insert(k.clone(), val.clone());
                }
            },
            k if KEEP.contains(&k) => {
                out.insert(k.to_string(), val.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_08_rejected_keywords_are_removed_and_refs_inlined() {
        let s = json!({"$schema": "x", "title": "T", "type": "object", "additionalProperties": false,
            "properties": {"city": {"type": "string", "default": "Paris", "examples": ["Rome"]}, "when": {"$ref": "#/$defs/When"}, "opt": {"type": ["string", "null"]}, "kind": {"const": "a"}},
            "required": ["city"], "$defs": {"When": {"type": "object", "title": "W", "properties": {"d": {"type": "string"}}}}});
        let out = sanitize_schema(&s);
        assert_eq!(
            out,
            json!({"type": "object", "properties": {"city": {"type": "string"}, "when": {"type": "object", "properties": {"d": {"type": "string"}}},
            "opt": {"type": "string", "nullable": true}, "kind": {"enum": ["a"]}}, "required": ["city"]})
        );
        let cyclic = json!({"$defs": {"A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}}, "$ref": "#/$defs/A"});
        let _ = sanitize_schema(&cyclic);
    }
}
