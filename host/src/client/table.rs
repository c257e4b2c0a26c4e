//! The host's JSON answers as plain-text tables, for people at a terminal.
//!
//! A list of objects is a table, one column per key (`name` first), leaving
//! out columns of larger nested values (breach counters, latency), which
//! `show` and `--format json` give; hashes are cut to 12 characters. An
//! object is a list of `key  value` lines, with each of its lists of
//! objects as a table below. Nested values are shown as compact JSON, cut at
//! [`MAX_CELL`] characters.

use serde_json::Value;

/// The widest cell shown.
const MAX_CELL: usize = 40;

/// `value` as text for a terminal.
pub(super) fn render(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Array(rows) => table(rows, &mut out),
        Value::Object(fields) => {
            let width = fields.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            let mut lists = Vec::new();
            for (key, field) in fields {
                match field {
                    Value::Array(rows) if rows.iter().all(Value::is_object) => lists.push((key, rows)),
                    _ => out.push_str(&format!("{key:<width$}  {}\n", cell(field))),
                }
            }
            for (key, rows) in lists {
                out.push_str(&format!("\n{key}:\n"));
                table(rows, &mut out);
            }
        }
        other => out.push_str(&format!("{}\n", cell(other))),
    }
    out
}

fn table(rows: &[Value], out: &mut String) {
    if rows.is_empty() {
        out.push_str("(none)\n");
        return;
    }
    let mut columns: Vec<&str> = Vec::new();
    let mut hidden: Vec<&str> = Vec::new();
    for row in rows {
        if let Value::Object(fields) = row {
            for (key, value) in fields {
                if is_large(value) {
                    hidden.push(key);
                } else if !columns.contains(&key.as_str()) {
                    columns.push(key);
                }
            }
        }
    }
    columns.retain(|c| !hidden.contains(c));
    if let Some(at) = columns.iter().position(|c| *c == "name") {
        columns[..=at].rotate_right(1);
    }
    if columns.is_empty() {
        for row in rows {
            out.push_str(&format!("{}\n", cell(row)));
        }
        return;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| row.get(c).map_or_else(|| "-".into(), |v| column_cell(c, v))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).chain([c.chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |values: Vec<&str>| {
        let padded: Vec<String> = values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    out.push_str(&line(columns.clone()));
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
}

/// A nested value with more than three entries: too much for a column.
fn is_large(value: &Value) -> bool {
    match value {
        Value::Object(fields) => fields.len() > 3,
        Value::Array(items) => items.len() > 3,
        _ => false,
    }
}

/// A table's cell: as [`cell`], with a SHA-256 cut to its first 12 digits.
fn column_cell(column: &str, value: &Value) -> String {
    match value {
        Value::String(hash) if column == "sha256" => hash.chars().take(12).collect(),
        other => cell(other),
    }
}

/// One value as a cell: text as is, null as `-`, anything nested as
/// compact JSON; at most [`MAX_CELL`] characters, on one line.
fn cell(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > MAX_CELL {
        let cut: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_tables_and_objects_are_lines() {
        let orders = serde_json::json!({ "venue": "alpaca", "orders": [
            { "client_order_id": "sb-1", "qty": "1", "status": "accepted" },
            { "client_order_id": "sb-22", "qty": "10", "extra": { "a": 1 } },
        ]});
        let text = render(&orders);
        assert_eq!(
            text,
            "venue   alpaca\n\norders:\nclient_order_id  qty  status    extra\nsb-1             1    accepted  -\nsb-22            10   -         {\"a\":1}\n"
        );
        assert_eq!(render(&serde_json::json!([])), "(none)\n");
        let instances = serde_json::json!([{ "state": "running", "name": "a", "sha256": "0123456789abcdef",
            "breaches": { "a": 0, "b": 0, "c": 0, "d": 0 } }]);
        assert_eq!(render(&instances), "name  sha256        state\na     0123456789ab  running\n");
        let long = render(&serde_json::json!({ "error": "x".repeat(100) + "\nnext" }));
        assert_eq!(long.chars().count(), "error  ".len() + MAX_CELL + 1, "{long}");
    }
}
